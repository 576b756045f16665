"""Deploy-engine fixtures: a real Caddy started the way the engine starts it, real NATS.

One Caddy per test module (stopped at the module's end), on a free port, state in a tmp dir.
`app_engine`: the handler with apps (a fleet of real processes, in the sandbox when this machine
has bubblewrap), env vars answered by a stand-in for the control-api, every app stopped after
the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.deploy_engine.apps.activation import AppActivation
from launchdeck.deploy_engine.apps.app_logs import AppLogs
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.deploy_engine.apps.shutdown import stop_apps
from launchdeck.deploy_engine.caddy import ensure_caddy, listen_address, stop_caddy
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.sites import Sites
from launchdeck.devservers import free_port
from launchdeck.libs.launcher.sandbox import detect_sandbox
from tests.deploy_engine.app_support import FAST, AppEngine, EnvResponder
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


@pytest_asyncio.fixture(loop_scope="session")
async def app_engine(
    edge: Edge, js: JetStreamContext, nc: Client, tmp_path: Path
) -> AsyncIterator[AppEngine]:
    """The deploy handler with apps; every app process it started is stopped afterwards."""
    responder = EnvResponder()
    instances = InstanceStore(tmp_path / "apps")
    logs = AppLogs(js, instances.seq_dir)
    logs.start()
    async with aiohttp.ClientSession() as session, responder.serving(nc):
        probe = EdgeProbe(session, "127.0.0.1", edge.port)
        fleet = Fleet(
            js=js,
            store=instances,
            releases=edge.store,
            sites=edge.sites,
            admin=edge.admin,
            settings=FAST,
            logs=logs,
            env_source=nats_env_source(nc, wait_s=FAST.env_wait_s),
            session=session,
            sandbox=detect_sandbox("auto", variable="LAUNCHDECK_APP_SANDBOX"),
            private=(edge.state_dir, tmp_path),
            site_url=lambda host: f"http://{host}:{edge.port}/",
        )
        handler = DeployHandler(
            js,
            edge.store,
            edge.sites,
            probe,
            site_url=lambda host: f"http://{host}:{edge.port}/",
            keep_releases=3,
            apps=AppActivation(fleet, edge.sites, edge.store, probe),
        )
        project = f"app-{uuid.uuid4().hex[:8]}"
        engine = Engine(handler, js, edge, str(uuid.uuid4()), project)
        try:
            yield AppEngine(engine, fleet, responder, instances.root)
        finally:
            await fleet.close()
            await logs.close()
            stop_apps(tmp_path, grace_s=1.0)
