"""A project's running apps: `GET /api/v1/projects/{id}/apps` answers what the deploy-engine
says over `ld.rpc.apps.report` — here a real fleet running a deployed Node app, answering as
the deploy-engine's NATS user to a control-api logged in as its own (so the permission table
is what lets them talk); a 503 when no engine answers; the project's read scope decides."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.app import create_app
from launchdeck.deploy_engine.apps.report import serve_apps_reports
from launchdeck.libs.jobs import Outcome
from tests.control_api.support import Api, ApiClient, make_settings, token, unique
from tests.deploy_engine.app_support import AppEngine, new_build
from tests.deploy_engine.conftest import app_engine, edge  # noqa: F401 (fixtures)
from tests.deploy_engine.sample_apps import node_app
from tests.env_rpc import service_connection


@pytest_asyncio.fixture(loop_scope="session")
async def api_as_control_api(
    pool: asyncpg.Pool, database_url: str, nats_url: str, js: JetStreamContext
) -> AsyncIterator[Api]:
    """The application on a NATS connection of the control-api's own user."""
    nc = await service_connection(nats_url, "control-api")
    app = create_app(make_settings(database_url, nats_url), pool, nc, js, background_tasks=False)
    client: Any = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()
        await nc.close()


@pytest_asyncio.fixture(loop_scope="session")
async def engine_nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await service_connection(nats_url, "deploy-engine")
    try:
        yield nc
    finally:
        await nc.close()


async def test_the_running_app_as_the_engine_reports_it(
    api_as_control_api: Api,
    app_engine: AppEngine,  # noqa: F811
    engine_nc: Client,
) -> None:
    api = api_as_control_api
    project = await api.create_project(unique("apps"))
    # The engine runs the app under the project's real id.
    engine = dataclasses.replace(app_engine.engine, project_id=project["id"])
    app = dataclasses.replace(app_engine, engine=engine)
    build = new_build()
    outcome, events = await app.deploy(build, node_app("node v1"))
    assert outcome is Outcome.ACK, events[-1].error
    sub = await serve_apps_reports(engine_nc, app.fleet)
    try:
        reply = await api.call("GET", f"/api/v1/projects/{project['name']}/apps")
        assert reply.status == 200, reply.body
        assert reply.body["project_id"] == project["id"]
        [web] = reply.body["instances"]
        assert web["slot"] == "production"
        assert web["environment"] == "production"
        assert web["process"] == "web"
        assert web["build_id"] == build
        assert web["deployment_id"] == events[-1].deployment_id
        assert web["status"] == "serving"
        assert (web["running"], web["ready"], web["healthy"]) == (True, True, True)
        assert web["pid"] == app.web().record.pid
        assert web["port"] == app.web().record.port
        assert web["restarts"] == 0
        assert web["last_exit"] is None
        assert web["uptime_s"] >= 0
        # A process app: no container facts.
        assert web["container"] is None
        assert web["image_size"] is None

        # Another project's token sees nothing of it; the project's read token does.
        other = token(["read"], "00000000-0000-0000-0000-000000000001")
        path = f"/api/v1/projects/{project['id']}/apps"
        assert (await api.call("GET", path, token=other)).status == 404
        read = token(["read"], project["id"])
        assert (await api.call("GET", path, token=read)).status == 200
        assert (await api.call("GET", path, token="")).status == 401
    finally:
        await sub.unsubscribe()


async def test_no_engine_answering_is_a_503(api_as_control_api: Api) -> None:
    api = api_as_control_api
    project = await api.create_project(unique("alone"))
    reply = await api.call("GET", f"/api/v1/projects/{project['id']}/apps")
    assert reply.status == 503
    assert reply.content_type.startswith("application/problem+json")
    assert reply.body["detail"] == "the deploy-engine did not answer"
