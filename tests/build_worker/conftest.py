"""Fixtures for the build-worker tests: settings, commands and a worker bound to the test NATS."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import BuildConfig, BuildRequested
from tests.build_worker.support import CommandFactory, make_settings


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    return tmp_path / "builds"


@pytest.fixture
def worker(js: JetStreamContext, build_dir: Path) -> BuildWorker:
    return BuildWorker(js, make_settings(build_dir))


@pytest.fixture
def command() -> CommandFactory:
    """Factory: a BuildRequested for `repo` with fresh build and project ids."""

    def factory(repo: Path | str, ref: str = "main", **config: Any) -> BuildRequested:
        return BuildRequested(
            build_id=str(uuid.uuid4()),
            project_id=str(uuid.uuid4()),
            project_name="site",
            number=1,
            repo_url=str(repo),
            ref=ref,
            config=BuildConfig(**config),
        )

    return factory
