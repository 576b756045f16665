"""Deploy-engine fixtures: a real Caddy started the way the engine starts it, real NATS.

One Caddy per test module (stopped at the module's end), on a free port, state in a tmp dir.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from launchdeck.deploy_engine.caddy import ensure_caddy, listen_address, stop_caddy
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.sites import Sites
from launchdeck.devservers import free_port
from tests.deploy_engine.support import Edge, Engine


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def edge(tmp_path_factory: pytest.TempPathFactory, caddy_bin: str) -> AsyncIterator[Edge]:
    state_dir = tmp_path_factory.mktemp("engine")
    port = free_port()
    listen = listen_address("127.0.0.1", port)
    admin = CaddyAdmin(await ensure_caddy(state_dir, listen, binary=caddy_bin))
    try:
        await admin.ensure_server(listen)
        store = ReleaseStore(state_dir / "releases")
        yield Edge(state_dir, port, admin, store, Sites(admin, store, "localhost"))
    finally:
        await admin.close()
        stop_caddy(state_dir)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(edge: Edge, js: JetStreamContext) -> AsyncIterator[Engine]:
    """A deploy handler on the module's Caddy, and a fresh project name."""
    async with aiohttp.ClientSession() as session:
        handler = DeployHandler(
            js,
            edge.store,
            edge.sites,
            EdgeProbe(session, "127.0.0.1", edge.port),
            site_url=lambda host: f"http://{host}:{edge.port}/",
            keep_releases=3,
        )
        project = f"site-{uuid.uuid4().hex[:8]}"
        yield Engine(handler, js, edge, str(uuid.uuid4()), project)
