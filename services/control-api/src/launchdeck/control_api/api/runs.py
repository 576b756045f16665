"""HTTP handlers of runs: start one, a project's history, detail, log, cancel.

`POST /api/v1/projects/{id}/runs` `{"command", "timeout_s"?}` (deploy scope) → 202 with the
queued run; the deploy-engine runs it in the live production release and reports `running`,
then `succeeded` or `failed` (events consumer). `GET /api/v1/runs/{id}/logs[?after_seq=N]`:
its log so far, or complete once it finished, as text or NDJSON (`Accept:
application/x-ndjson`) like a build's. `POST /api/v1/runs/{id}/cancel` (deploy scope): see
`cancel`.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from launchdeck.contracts.api import RunCreate, RunLogRecord, RunOut
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import RunCancelRequested
from launchdeck.contracts.statuses import RUN_FINISHED
from launchdeck.contracts.subjects import KV_CANCELLATIONS
from launchdeck.control_api.api.auth import require_scope
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import JS, POOL
from launchdeck.control_api.api.logs import NDJSON, wants_ndjson
from launchdeck.control_api.api.lookup import load_of_project
from launchdeck.control_api.api.pagination import (
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.domain.errors import Conflict, Invalid
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.domain.runs import cancel_run, request_run
from launchdeck.control_api.logs.run_log import run_log_chunks
from launchdeck.control_api.store import runs
from launchdeck.control_api.store.records import Run
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_encoder = msgspec.json.Encoder()


def run_out(run: Run) -> RunOut:
    return msgspec.convert(run, RunOut, from_attributes=True)


async def create_run(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    body = await read_json(request, RunCreate)
    async with request.app[POOL].acquire() as conn:
        run = await request_run(
            conn, project, command=body.command, timeout_s=body.timeout_s, schedule_id=None
        )
    response = json_response(run_out(run), status=202)
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return response


async def list_runs(request: web.Request) -> web.Response:
    """Newest first; `?schedule_id=` keeps one schedule's runs."""
    project = await load_project(request, "read")
    page = page_request(request)
    before = decode_time_id_cursor(page.cursor) if page.cursor else None
    schedule_id = None
    raw = request.query.get("schedule_id")
    if raw is not None:
        schedule_id = parse_uuid(raw)
        if schedule_id is None:
            raise Invalid.field("schedule_id", "must be a UUID")
    async with request.app[POOL].acquire() as conn:
        rows = await runs.list_page(
            conn, project.id, limit=page.limit + 1, before=before, schedule_id=schedule_id
        )
    return json_response(
        paginate(rows, page.limit, lambda r: encode_cursor(r.created_at, r.id), run_out)
    )


async def load_run(request: web.Request, raw_id: str) -> Run:
    """The run whose id is `raw_id`, if the token may read it; NotFound otherwise (also for a
    malformed id)."""
    return await load_of_project(request, raw_id, "run", runs.get)


async def get_run(request: web.Request) -> web.Response:
    return json_response(run_out(await load_run(request, request.match_info["id"])))


async def get_run_log(request: web.Request) -> web.Response:
    run = await load_run(request, request.match_info["id"])
    after_seq = query_int(request, "after_seq", default=0, minimum=0)
    ndjson = wants_ndjson(request)
    run_id = str(run.id)
    parts: list[bytes] = []
    chunks = run_log_chunks(request.app[JS], run, from_seq=after_seq + 1, follow=False)
    async with aclosing(chunks):
        async for chunk in chunks:
            if ndjson:
                records = [
                    RunLogRecord(
                        run_id=run_id, seq=line.seq, ts=line.ts, stream=line.stream, line=line.line
                    )
                    for line in chunk.lines
                ]
                parts.append(_encoder.encode_lines(records))
            else:
                parts.append("".join(f"{line.line}\n" for line in chunk.lines).encode())
    return web.Response(
        body=b"".join(parts),
        content_type=NDJSON if ndjson else "text/plain",
        charset=None if ndjson else "utf-8",
    )


async def cancel(request: web.Request) -> web.Response:
    """202 with the run: `cancelled` already when it was queued, else still running with
    `cancel_requested_at` set (it ends `cancelled` within seconds); 409 once it has finished.

    The run's mark in the `cancellations` bucket is written first (503 when NATS cannot take
    it, and nothing changed): the deploy-engine reads it before starting the command and every
    second while it runs."""
    run = await load_run(request, request.match_info["id"])
    require_scope(request, run.project_id, "deploy", not_found=f"no run {str(run.id)!r}")
    if run.status in RUN_FINISHED:
        raise Conflict(f"run {run.id} has already finished: {run.status}")
    now = datetime.now(UTC)
    mark = RunCancelRequested(run_id=str(run.id), project_id=str(run.project_id), requested_at=now)
    bucket = await request.app[JS].key_value(KV_CANCELLATIONS)
    await bucket.put(mark.run_id, encode(mark))
    async with request.app[POOL].acquire() as conn:
        cancelled = await cancel_run(conn, run.id, now=now)
    log.info("run_cancel_requested", run_id=str(run.id), queued=cancelled.status == "cancelled")
    return json_response(run_out(cancelled), status=202)


def setup_run_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects/{id}/runs", create_run)
    app.router.add_get("/api/v1/projects/{id}/runs", list_runs)
    app.router.add_get("/api/v1/runs/{id}", get_run)
    app.router.add_get("/api/v1/runs/{id}/logs", get_run_log)
    app.router.add_post("/api/v1/runs/{id}/cancel", cancel)
