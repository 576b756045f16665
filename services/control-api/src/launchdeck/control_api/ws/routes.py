"""WebSocket endpoints (SPEC §4); the protocol is `launchdeck.contracts.ws`.

`GET /api/v1/builds/{id}/logs/ws[?from_seq=N][&batch=true|N]`: one build's log, replay then live,
then `end` and a normal close (1000); with `batch`, in `logs` frames (`contracts.ws`).
`GET /api/v1/projects/{id}/logs/ws[?tail=N|since=T|from_cursor=C]`:
a running app's log, the recent lines (100 unless told) then live ones, until the viewer leaves.
`GET /api/v1/ws`: several channels over one socket (build logs, project events, app logs,
generation progress), subscribed and unsubscribed by client messages.

Each socket has its own `Outbox` (bounded backlog, one writer task); a viewer cut off as too slow
(1013) or by a failure (1011) reconnects with `from_seq` = its last seq + 1.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode, web

from launchdeck.contracts.ws import MAX_BATCH_LINES, batch_limit
from launchdeck.control_api.api.builds import load_build
from launchdeck.control_api.api.keys import JS, METRICS, SETTINGS
from launchdeck.control_api.api.logs import app_log_query
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.logs.app import iter_app_log
from launchdeck.control_api.logs.live import LiveLogs
from launchdeck.control_api.ws.channels import (
    LIVE_LOGS,
    MuxSession,
    pump_app_log,
    pump_build_log,
)
from launchdeck.control_api.ws.connection import OutboxRegistry, cancel_task, new_websocket, serve
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

WS_OUTBOXES = web.AppKey("ws_outboxes", OutboxRegistry)

STREAM_FAILED_REASON = b"reading the log failed: reconnect with from_seq"
APP_LOG_FAILED_REASON = b"reading the log failed: reconnect with from_cursor"


async def build_log_ws(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    build = await load_build(request, request.match_info["id"])
    from_seq = query_int(request, "from_seq", default=1, minimum=1)
    batch = _query_batch(request)

    ws = new_websocket()
    await ws.prepare(request)
    async with app[WS_OUTBOXES].open(request, ws, app[SETTINGS].ws_queue_size) as outbox:

        async def produce() -> None:
            try:
                complete = await pump_build_log(
                    app, outbox, build, from_seq=from_seq, channel=None, batch=batch
                )
            except Exception:
                log.exception("ws_log_stream_failed", build_id=str(build.id))
                outbox.close_now(WSCloseCode.INTERNAL_ERROR, STREAM_FAILED_REASON)
                return
            if complete:
                outbox.finish()  # after `end`: a normal close

        producer = asyncio.create_task(produce())
        try:
            await serve(ws, outbox, on_text=None)  # nothing is expected from this viewer
        finally:
            await cancel_task(producer)
    return ws


def _query_batch(request: web.Request) -> int:
    """`?batch=`: `true`/`1` batched frames of the default size, N >= 2 up to N lines a frame,
    `false`/`0` (or absent) one frame per line; as `batch_limit` reads the subscribe field."""
    raw = request.query.get("batch", "").lower()
    if raw in {"true", "yes", "on"}:
        return batch_limit(True)
    if raw in {"false", "no", "off"}:
        return 0
    return batch_limit(query_int(request, "batch", default=0, minimum=0, maximum=MAX_BATCH_LINES))


async def app_log_ws(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    project = await load_project(request, "read")
    query = app_log_query(request)

    ws = new_websocket()
    await ws.prepare(request)
    async with app[WS_OUTBOXES].open(request, ws, app[SETTINGS].ws_queue_size) as outbox:

        async def produce() -> None:
            batches = iter_app_log(app[JS], str(project.id), query, follow=True)
            try:
                await pump_app_log(outbox, batches, channel=None)
            except Exception:
                log.exception("ws_app_log_stream_failed", project_id=str(project.id))
                outbox.close_now(WSCloseCode.INTERNAL_ERROR, APP_LOG_FAILED_REASON)

        producer = asyncio.create_task(produce())
        try:
            await serve(ws, outbox, on_text=None)  # nothing is expected from this viewer
        finally:
            await cancel_task(producer)
    return ws


async def mux_ws(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = new_websocket()
    await ws.prepare(request)
    async with app[WS_OUTBOXES].open(request, ws, app[SETTINGS].ws_queue_size) as outbox:
        session = MuxSession(request, outbox)
        try:
            await serve(ws, outbox, session.on_text)
        finally:
            await session.close()
    return ws


async def _close_all(app: web.Application) -> None:
    await app[WS_OUTBOXES].close_all()


async def _stop_live_logs(app: web.Application) -> None:
    await app[LIVE_LOGS].stop_all()


def setup_ws_routes(app: web.Application) -> None:
    """Register `/api/v1/builds/{id}/logs/ws`, `/api/v1/projects/{id}/logs/ws` and `/api/v1/ws`;
    close every socket on shutdown."""
    metrics = app[METRICS]
    registry = OutboxRegistry(on_slow_close=metrics.count_websocket_slow_close)
    metrics.watch_open_websockets(lambda: registry.open_count)
    app[WS_OUTBOXES] = registry
    app[LIVE_LOGS] = LiveLogs(app[JS])
    app.router.add_get("/api/v1/builds/{id}/logs/ws", build_log_ws)
    app.router.add_get("/api/v1/projects/{id}/logs/ws", app_log_ws)
    app.router.add_get("/api/v1/ws", mux_ws)
    app.on_shutdown.append(_close_all)
    app.on_cleanup.append(_stop_live_logs)
