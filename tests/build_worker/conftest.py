"""Fixtures for the build-worker tests: settings, commands and a worker bound to the test NATS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts.messages import BuildConfig, BuildRequested
from launchdeck.contracts.subjects import SUBJECT_BUILD_JOBS
from launchdeck.libs.jobs import Delivery

CommandFactory = Callable[..., BuildRequested]


def make_settings(build_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "nats_url": "nats://unused",
        "build_dir": build_dir,
        "allow_local_repos": True,
        "concurrency": 1,
        "timeout_s": 120,
        "log_max_bytes": 10 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


def delivery(attempt: int = 1, max_deliver: int = 3) -> Delivery:
    return Delivery(
        num_delivered=attempt, max_deliver=max_deliver, subject=SUBJECT_BUILD_JOBS, stream_seq=1
    )


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
