"""Fixtures of the tests that need a container engine (`make test-containers`, marker
`containers`): the engine, and the local base image every test image is built on (made once
per machine by deploy/images/make-base.sh: no registry is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE_BASE = ROOT / "deploy/images/make-base.sh"


@pytest.fixture(scope="session")
def container_engine() -> str:
    """podman (or docker): the tests of this folder exist to exercise one, so its absence is a
    failure, not a skip (`deploy/images/setup-podman.sh` installs podman)."""
    engine = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
    assert engine, "no container engine: run deploy/images/setup-podman.sh (needs root)"
    return engine


@pytest.fixture(scope="session")
def base_image(container_engine: str) -> str:
    """The local Debian base image's name (built or loaded by make-base.sh)."""
    result = subprocess.run(
        [str(MAKE_BASE)],
        env={**os.environ, "CONTAINER_ENGINE": container_engine},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
