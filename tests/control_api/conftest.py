"""control-api fixtures: the real application in-process (aiohttp TestServer) over the real
module database and the session's NATS. Helpers (tokens, the JSON client) are in support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.app import create_app
from launchdeck.libs import db
from tests.control_api.support import Api, ApiClient, make_settings


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> AsyncIterator[Api]:
    """The application without its background tasks (tests drive relay and events directly)."""
    app = create_app(make_settings(database_url, nats_url), pool, nc, js, background_tasks=False)
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()
