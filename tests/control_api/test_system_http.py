"""Probes and metrics: /health, /ready (503 when a dependency is gone), /metrics."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from nats.js import JetStreamContext

from launchdeck.control_api.app import create_app
from launchdeck.libs.jetstream import connect
from tests.control_api.log_support import ADMIN
from tests.control_api.support import Api, make_settings, unique
from tests.polling import eventually


async def test_health_and_ready(api: Api) -> None:
    """Both probes answer 200 without a token when Postgres and NATS are up."""
    api.token = None
    health = await api.call("GET", "/health")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await api.call("GET", "/ready")
    assert ready.status == 200
    assert ready.body["checks"] == {"postgres": "ok", "nats": "ok"}


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
    client: TestClient[Any, Any] = TestClient(TestServer(app))
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
