"""The tests that need a container engine (`make test-containers`, marker `containers`) get it
and the local base image from tests/conftest.py (`container_engine`, `base_image`): the
deploy-engine's container app tests use them too."""

from __future__ import annotations

import pytest

from tests.containers.service_images import BuiltImages, build_images


@pytest.fixture(scope="session")
def service_images(container_engine: str, base_image: str) -> BuiltImages:
    """The four service images plus compose's postgres and nats, built on the local base by
    deploy/images/build.sh (`make images`), once per session."""
    return build_images(container_engine, base_image)
