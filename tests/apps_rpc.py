"""A deploy-engine answering `ld.rpc.apps.report` in a test: the engine's real `Fleet` and
responder, with nothing running (empty apps and releases directories), logged in as the
deploy-engine's NATS user — for tests of the control-api that need the engine to answer (the
API fuzz test) without deploying an app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from nats.js import JetStreamContext

from launchdeck.deploy_engine.apps.app_logs import AppLogs
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.deploy_engine.apps.report import serve_apps_reports
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.settings import AppSettings
from launchdeck.deploy_engine.sites import Sites
from launchdeck.libs.launcher.sandbox import detect_sandbox
from tests.env_rpc import service_connection


@contextlib.asynccontextmanager
async def idle_engine_answering(
    nats_url: str, js: JetStreamContext, state_dir: Path
) -> AsyncIterator[Fleet]:
    nc = await service_connection(nats_url, "deploy-engine")
    releases = ReleaseStore(state_dir / "releases")
    instances = InstanceStore(state_dir / "apps")
    # Never contacted: nothing is deployed, so nothing is routed.
    admin = CaddyAdmin("127.0.0.1:1")
    try:
        async with aiohttp.ClientSession() as session:
            fleet = Fleet(
                js=js,
                store=instances,
                releases=releases,
                sites=Sites(admin, releases, "localhost"),
                admin=admin,
                settings=AppSettings(),
                logs=AppLogs(js, instances.seq_dir),
                env_source=nats_env_source(nc, wait_s=1.0),
                session=session,
                sandbox=detect_sandbox("none"),
                private=(state_dir,),
                site_url=lambda host: f"http://{host}/",
            )
            sub = await serve_apps_reports(nc, fleet)
            try:
                yield fleet
            finally:
                await sub.unsubscribe()
    finally:
        await admin.close()
        await nc.close()
