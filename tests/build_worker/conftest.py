"""Fixtures for the build-worker tests: settings, commands and a worker bound to the test NATS,
and a NATS server of a test's own that it can stop and start again (`restartable_nats`, `own_js`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import BuildConfig, BuildRequested
from launchdeck.libs.jetstream import provision
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


@pytest_asyncio.fixture(loop_scope="session")
async def own_js(own_nc: Client) -> JetStreamContext:
    """JetStream on `restartable_nats`, provisioned like the platform's."""
    js = own_nc.jetstream()
    await provision(js)
    return js
