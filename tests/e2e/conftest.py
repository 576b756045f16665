"""End-to-end fixtures: the four services started as real processes, as users run them.

One platform per test module: its own database, state directory (releases, Caddy, build dirs),
free ports, and the session's NATS server, each service logged in as its own NATS user (a
refusal by the server fails the module's teardown). Helpers are in support.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.support import Api, Platform, launch_platform


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, nats_url: str, nats_log: Path
) -> AsyncIterator[Platform]:
    async with launch_platform(
        tmp_path_factory.mktemp("platform"), database_url, nats_url, nats_logs=[nats_log]
    ) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, platform)
