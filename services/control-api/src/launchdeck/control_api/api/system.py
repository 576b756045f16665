"""Probes and metrics: `/health` (liveness), `/ready` (Postgres, NATS and the streams used),
`/metrics`."""

from __future__ import annotations

import asyncio

from aiohttp import web

from launchdeck.contracts.api import Health, Readiness
from launchdeck.contracts.subjects import STREAM_BUILDS, STREAM_DEPLOYS, STREAM_EVENTS, STREAM_LOGS
from launchdeck.control_api.api import scrape
from launchdeck.control_api.api.json_io import json_response
from launchdeck.control_api.api.keys import JS, METRICS, NC, POOL
from launchdeck.control_api.metrics import CONTENT_TYPE
from launchdeck.control_api.store import probe
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

READY_TIMEOUT_S = 2.0
# The streams this service reads or writes: events in, logs read, commands out (the outbox).
USED_STREAMS = (STREAM_EVENTS, STREAM_LOGS, STREAM_BUILDS, STREAM_DEPLOYS)


async def health(_request: web.Request) -> web.Response:
    return json_response(Health())


async def _check_postgres(request: web.Request) -> str | None:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with request.app[POOL].acquire() as conn:
                await probe.ping(conn)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


async def _check_nats(request: web.Request) -> str | None:
    if not request.app[NC].is_connected:
        return "not connected"
    return None


async def _check_stream(request: web.Request, stream: str) -> str | None:
    """The stream answers (it has a leader): a connected client is not enough, since on a
    cluster a stream whose node died answers nothing until a new leader is elected."""
    if not request.app[NC].is_connected:
        return "NATS not connected"
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await request.app[JS].stream_info(stream)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


async def ready(request: web.Request) -> web.Response:
    postgres, nats, *streams = await asyncio.gather(
        _check_postgres(request),
        _check_nats(request),
        *(_check_stream(request, name) for name in USED_STREAMS),
    )
    checks = {"postgres": postgres or "ok", "nats": nats or "ok"}
    checks.update(
        {f"stream {name}": error or "ok" for name, error in zip(USED_STREAMS, streams, strict=True)}
    )
    if postgres or nats or any(streams):
        log.warning("not_ready", **checks)
        return json_response(Readiness(status="unavailable", checks=checks), status=503)
    return json_response(Readiness(status="ready", checks=checks))


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    # JetStream first: it never fails (a consumer that does not answer has no series), while
    # Postgres away makes the scrape a 503.
    await scrape.read_consumers(request.app[NC], request.app[JS], registry)
    async with request.app[POOL].acquire() as conn:
        await scrape.read_postgres(conn, registry)
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE})


async def index(request: web.Request) -> web.Response:
    """A browser (asking for HTML) goes to the dashboard; any other client learns where the
    API's things are."""
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPFound("/projects")
    return json_response(
        {
            "name": "launchdeck",
            "api": "/api/v1",
            "health": "/health",
            "ready": "/ready",
            "metrics": "/metrics",
            "openapi": "/api/v1/openapi.json",
            "docs": "/api/docs",
            "auth": "Authorization: Bearer <token> (make dev prints an admin token)",
        }
    )


def setup_system_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
