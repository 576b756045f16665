"""HTTP handlers of builds: trigger, a project's history, detail, cancel.

Cancelling (`POST /api/v1/builds/{id}/cancel`) writes to NATS around the database's
transaction, in this order, so that no failure leaves a cancel half done:

1. the build's mark in the `cancellations` KV bucket. If NATS cannot take it the request fails
   (503) and nothing changed. Written first because it is what makes the cancel stick: a worker
   that picks up the build's job — queued, or redelivered after its worker died — reads it
   before running anything and drops the job (reporting `cancelled`, so a control-api that
   crashed right after writing the mark still ends up with the build cancelled);
2. the transaction (`domain.builds.cancel_build`): a queued build is `cancelled` now; a running
   one records the request;
3. `BuildCancelRequested` on core NATS (`ld.control.build.cancel`), published directly after the
   commit rather than through the outbox (which relays to JetStream streams, and a cancel is not
   a job to queue): every worker hears it, and the one running the build stops it at once. Core
   NATS keeps nothing, so a worker that misses it (reconnecting at that moment) finds the mark
   instead: a running build looks for it every few seconds;
4. for a build that was queued, its log's end (`■ Cancelled before it started`), so viewers
   following it stop waiting (if that fails, the worker that drops the job, or the log sweep,
   writes it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import nats.errors
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.api import BuildCreate
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildCancelRequested
from launchdeck.contracts.statuses import BUILD_FINISHED
from launchdeck.contracts.subjects import KV_CANCELLATIONS, SUBJECT_BUILD_CANCEL
from launchdeck.control_api.api.auth import require_scope
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import JS, NC, POOL
from launchdeck.control_api.api.lookup import load_of_project
from launchdeck.control_api.api.page_cache import BUILD_PAGES, cached_json_response, encode_json
from launchdeck.control_api.api.pagination import (
    decode_int_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.present import build_out, build_out_of_row
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain.builds import cancel_build, finished_conflict, trigger_build
from launchdeck.control_api.domain.errors import Invalid, NotFound
from launchdeck.control_api.domain.projects import project_key
from launchdeck.control_api.logs.eof import ensure_log_eof
from launchdeck.control_api.store import builds
from launchdeck.control_api.store.records import Build
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# How long announcing a cancel to the workers may take before the request answers anyway (the
# mark, written before, covers a word that did not get out).
ANNOUNCE_TIMEOUT_S = 2  # seconds (nats-py takes whole ones)
QUEUED_LOG_END = "■ Cancelled before it started"


async def create_build(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    body = await read_json(request, BuildCreate, empty_ok=True)
    async with request.app[POOL].acquire() as conn:
        build = await trigger_build(conn, project, body)
    response = json_response(build_out(build), status=202)
    response.headers["Location"] = f"/api/v1/builds/{build.id}"
    return response


async def list_builds(request: web.Request) -> web.Response:
    """The project's builds, newest first (the API's hottest read): a page is served from the
    per-process cache (`domain.page_cache`: at most a second old, dropped at once by this
    process's own changes) after the token's scope is checked; else the project and the page
    come in one query and rows are presented straight to `BuildOut`."""
    id_or_name = request.match_info["id"]
    try:
        page = page_request(request)
        before = decode_int_cursor(page.cursor) if page.cursor else None
    except Invalid:
        # Bad paging says nothing until the token may see the project (404 first, as before).
        await load_project(request, "read")
        raise
    not_found = f"no project {id_or_name!r}"
    cache = request.app[BUILD_PAGES]
    cache_key = (id_or_name, page.limit, before)
    if (hit := cache.get(cache_key)) is not None:
        require_scope(request, hit[0], "read", not_found=not_found)
        return cached_json_response(hit[1])
    key = project_key(id_or_name)
    found: uuid.UUID | None = None
    rows: list[Any] = []
    mark = cache.mark()
    if key is not None:
        async with request.app[POOL].acquire() as conn:
            found, rows = await builds.project_page(
                conn, key, limit=page.limit + 1, before_number=before
            )
    if found is None:
        raise NotFound(not_found)
    require_scope(request, found, "read", not_found=not_found)
    body = encode_json(
        paginate(rows, page.limit, lambda r: encode_cursor(r["number"]), build_out_of_row)
    )
    cache.put(cache_key, found, body, mark)
    return cached_json_response(body)


async def load_build(request: web.Request, raw_id: str) -> Build:
    """The build whose id is `raw_id`, if the token may read it; NotFound otherwise (also for a
    malformed id)."""
    return await load_of_project(request, raw_id, "build", builds.get)


async def get_build(request: web.Request) -> web.Response:
    return json_response(build_out(await load_build(request, request.match_info["id"])))


async def cancel(request: web.Request) -> web.Response:
    """202 with the build: `cancelled` already when it was queued, else still running with
    `cancel_requested_at` set (it ends `cancelled` within seconds); 409 when it has finished."""
    build = await load_build(request, request.match_info["id"])
    require_scope(request, build.project_id, "deploy", not_found=f"no build {str(build.id)!r}")
    if build.status in BUILD_FINISHED:
        raise finished_conflict(build)
    now = datetime.now(UTC)
    word = BuildCancelRequested(
        build_id=str(build.id), project_id=str(build.project_id), requested_at=now
    )
    js = request.app[JS]
    await _mark_cancelled(js, word)
    async with request.app[POOL].acquire() as conn:
        outcome = await cancel_build(conn, build.id, now=now)
    await _announce(request.app[NC], word)
    if outcome.ended:
        try:
            await ensure_log_eof(
                js, str(build.id), "cancelled", attempt=build.attempt, line=QUEUED_LOG_END
            )
        except Exception as exc:  # the dropping worker or the log sweep ends it instead
            log.warning("cancelled_build_log_not_ended", build_id=str(build.id), error=repr(exc))
    log.info("build_cancel_requested", build_id=str(build.id), queued=outcome.ended)
    return json_response(build_out(outcome.build), status=202)


async def _mark_cancelled(js: JetStreamContext, word: BuildCancelRequested) -> None:
    """The build's key in the `cancellations` bucket (raises while NATS cannot take it)."""
    bucket = await js.key_value(KV_CANCELLATIONS)
    await bucket.put(word.build_id, encode(word))


async def _announce(nc: Client, word: BuildCancelRequested) -> None:
    """Tell every worker, best effort (the mark covers a word that does not get through)."""
    try:
        await nc.publish(SUBJECT_BUILD_CANCEL, encode(word))
        await nc.flush(timeout=ANNOUNCE_TIMEOUT_S)
    except (nats.errors.Error, TimeoutError) as exc:
        log.warning("build_cancel_not_announced", build_id=word.build_id, error=repr(exc))


def setup_build_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects/{id}/builds", create_build)
    app.router.add_get("/api/v1/projects/{id}/builds", list_builds)
    app.router.add_get("/api/v1/builds/{id}", get_build)
    app.router.add_post("/api/v1/builds/{id}/cancel", cancel)
