"""Probes and metrics: /health, /ready (503 when a dependency is gone), /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.subjects import STREAM_LOGS
from launchdeck.control_api.app import create_app
from launchdeck.libs.jetstream import connect, provision
from tests.control_api.log_support import ADMIN
from tests.control_api.support import Api, ApiClient, make_settings, unique
from tests.libs.support import RestartableNats
from tests.polling import eventually


async def test_health_and_ready(api: Api) -> None:
    """Both probes answer 200 without a token when Postgres and NATS are up."""
    api.token = None
    health = await api.call("GET", "/health")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await api.call("GET", "/ready")
    assert ready.status == 200
    assert ready.body["checks"] == {
        "postgres": "ok",
        "nats": "ok",
        "stream EVENTS": "ok",
        "stream LOGS": "ok",
        "stream BUILDS": "ok",
        "stream DEPLOYS": "ok",
    }


async def test_index_points_to_the_api_without_a_token(api: Api) -> None:
    """`GET /` (the URL `make dev` prints) answers without a token and says where things are."""
    api.token = None
    index = await api.call("GET", "/")
    assert index.status == 200
    assert index.body["api"] == "/api/v1"
    assert index.body["health"] == "/health"
    projects = await api.call("GET", "/api/v1/projects")
    assert projects.status == 401


async def test_ready_is_503_without_nats(
    pool: asyncpg.Pool, database_url: str, nats_url: str, js: JetStreamContext
) -> None:
    """With the NATS connection gone, /ready is 503 and says which dependency failed."""
    closed = await connect(nats_url, name="launchdeck-tests-closed")
    await closed.close()
    settings = make_settings(database_url, nats_url)
    app = create_app(settings, pool, closed, closed.jetstream(), background_tasks=False)
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        async with client.get("/ready") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["nats"] != "ok"
        async with client.get("/health") as resp:
            assert resp.status == 200  # liveness does not depend on NATS
    finally:
        await client.close()


async def test_metrics_count_requests_and_builds(api: Api) -> None:
    """/metrics is Prometheus text with request counts by route and status, builds by status."""
    name = unique("metrics")
    await api.create_project(name)
    await api.call("POST", f"/api/v1/projects/{name}/builds", {"deploy": False})
    await api.call("GET", "/api/v1/projects/no-such-project")
    reply = await api.call("GET", "/metrics", token="")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text: str = reply.body
    assert "# TYPE launchdeck_http_requests_total counter" in text
    assert (
        'launchdeck_http_requests_total{method="POST",route="/api/v1/projects/{id}/builds",'
        'status="202"} 1'
    ) in text
    assert (
        'launchdeck_http_requests_total{method="GET",route="/api/v1/projects/{id}",status="404"} 1'
    ) in text
    assert 'launchdeck_builds{status="queued"} ' in text
    assert "launchdeck_outbox_pending " in text


def metric(text: str, name: str) -> str:
    """The value of an unlabelled metric in a /metrics page."""
    values = [line.split()[1] for line in text.splitlines() if line.split(" ")[0] == name]
    assert len(values) == 1, f"{name} not exactly once in:\n{text}"
    return values[0]


async def test_metrics_count_open_websockets(api: Api) -> None:
    """/metrics reports open WebSockets (a gauge) and slow-consumer closes (a counter), with
    HELP and TYPE lines; the gauge follows sockets opening and closing."""
    page = (await api.call("GET", "/metrics", token="")).body
    assert "# TYPE launchdeck_websockets_open gauge" in page
    assert "# HELP launchdeck_websockets_open " in page
    assert "# TYPE launchdeck_websocket_slow_closes_total counter" in page
    assert "# TYPE launchdeck_abandoned_jobs_total counter" in page
    assert "# TYPE launchdeck_build_logs_swept_total counter" in page
    assert metric(page, "launchdeck_websockets_open") == "0"
    assert metric(page, "launchdeck_websocket_slow_closes_total") == "0"

    sockets = [await api.client.ws_connect(f"/api/v1/ws?token={ADMIN}") for _ in range(2)]
    page = (await api.call("GET", "/metrics", token="")).body
    assert metric(page, "launchdeck_websockets_open") == "2"
    for ws in sockets:
        await ws.close()

    async def gauge() -> str:
        return metric(
            (await api.call("GET", "/metrics", token="")).body, "launchdeck_websockets_open"
        )

    async def none_counted() -> bool:
        return await gauge() == "0"

    await eventually("closed sockets no longer counted", none_counted)


@pytest_asyncio.fixture(loop_scope="session")
async def own_api(
    pool: asyncpg.Pool, database_url: str, restartable_nats: RestartableNats, own_nc: Client
) -> AsyncIterator[tuple[Api, JetStreamContext]]:
    """The app on a NATS server of the test's own (the test breaks it)."""
    js = own_nc.jetstream()
    await provision(js)
    app = create_app(
        make_settings(database_url, restartable_nats.url), pool, own_nc, js, background_tasks=False
    )
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client), js
    finally:
        await client.close()


async def test_ready_names_a_stream_that_does_not_answer(
    own_api: tuple[Api, JetStreamContext],
) -> None:
    """Connected is not enough: a stream the API uses that does not answer makes /ready 503,
    naming it; the others still say ok."""
    api, js = own_api
    await js.delete_stream(STREAM_LOGS)
    try:
        ready = await api.call("GET", "/ready", token="")
        assert ready.status == 503
        assert ready.body["checks"]["nats"] == "ok"
        assert ready.body["checks"]["stream LOGS"] != "ok"
        assert ready.body["checks"]["stream EVENTS"] == "ok"
    finally:
        await provision(js)
    assert (await api.call("GET", "/ready", token="")).status == 200


async def test_log_endpoint_is_503_with_retry_after_while_nats_is_away(
    own_api: tuple[Api, JetStreamContext], restartable_nats: RestartableNats
) -> None:
    """The log of a running build comes from the LOGS stream: with NATS away the answer is a
    503 problem with Retry-After (never a 500), and the log is served again once NATS is back."""
    api, _ = own_api
    project = await api.create_project(unique("outage"))
    build = (await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})).body
    path = f"/api/v1/builds/{build['id']}/logs"
    assert (await api.call("GET", path)).status == 200
    await restartable_nats.astop()
    try:
        away = await api.call("GET", path)
        assert away.status == 503, away.body
        assert away.content_type.startswith("application/problem+json")
        assert int(away.headers["Retry-After"]) > 0
        assert (await api.call("GET", "/ready", token="")).status == 503
    finally:
        await restartable_nats.astart()

    async def served() -> bool:
        return (await api.call("GET", path)).status == 200

    await eventually("the log served again", served, timeout_s=20)
