"""HTTP handlers of generation jobs: create (JSON, or multipart with an uploaded rows file),
dry run, a project's jobs, one job, its items, cancel.

A create body is `GenerationCreate` as JSON, or `multipart/form-data` with that JSON as the
`spec` part and the rows as a file part `rows` (`.jsonl`/`.ndjson` or `.csv`, by file name or
Content-Type). The file is parsed as its chunks arrive (`variables.read_jsonl`/`read_csv` in a
thread, pulling each chunk from the request on the event loop), so it is never held whole; it
may be larger than the 1 MiB JSON body limit, bounded by the item limit and the line limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import msgspec
from aiohttp import BodyPartReader, web

from launchdeck.contracts.api import (
    GenerationCreate,
    GenerationItemOut,
    GenerationLimits,
    GenerationModel,
    GenerationOut,
    GenerationParameters,
)
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import GenerationCancelRequested
from launchdeck.contracts.subjects import SUBJECT_GENERATION_CANCEL
from launchdeck.control_api.api.auth import TOKEN, require_scope
from launchdeck.control_api.api.json_io import MAX_BODY_BYTES, decode_body, json_response, read_json
from launchdeck.control_api.api.keys import NC, POOL, SETTINGS
from launchdeck.control_api.api.lookup import load_of_project
from launchdeck.control_api.api.pagination import (
    decode_int_cursor,
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.domain import generations as service
from launchdeck.control_api.domain.errors import DomainError, Invalid
from launchdeck.control_api.store import generations as store
from launchdeck.control_api.store.generations import GenerationItem, GenerationJob
from launchdeck.libs.generation import variables
from launchdeck.libs.generation.pricing import usd_text
from launchdeck.libs.generation.variables import Expansion, VariablesError
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

UPLOAD_CHUNK_BYTES = 64 * 1024
# How long the parser waits for the next chunk of an upload before giving up on the client.
UPLOAD_STALL_S = 60.0
ITEM_STATUSES = ("pending", "done", "failed")
_JSONL_NAMES = (".jsonl", ".ndjson")
_JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")

# --- presenting ---------------------------------------------------------------------------------


def generation_out(job: GenerationJob) -> GenerationOut:
    return GenerationOut(
        id=job.id,
        project_id=job.project_id,
        template_id=job.template_id,
        template_name=job.template_name,
        template_version=job.template_version,
        status=job.status,
        model=msgspec.convert(job.model, GenerationModel),
        parameters=msgspec.convert(job.parameters, GenerationParameters),
        limits=msgspec.convert(job.limits, GenerationLimits),
        group_by=job.group_by,
        cache=job.cache,
        total=job.total,
        done=job.done,
        failed=job.failed,
        pending=job.pending,
        cached=job.cached,
        tokens_in=job.tokens_in,
        tokens_out=job.tokens_out,
        cost_usd=usd_text(job.cost_usd),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        created_by=job.created_by,
    )


def item_out(item: GenerationItem) -> GenerationItemOut:
    return GenerationItemOut(
        index=item.idx,
        status=item.status,
        variables=item.variables,
        group=item.grp,
        outputs=item.outputs or {},
        error=item.error,
        tokens_in=item.tokens_in,
        tokens_out=item.tokens_out,
        cost_usd=usd_text(item.cost_usd),
        cached=item.cached,
        attempts=item.attempts,
        finished_at=item.finished_at,
    )


# --- reading a create body ----------------------------------------------------------------------


def _rows_reader(part: BodyPartReader) -> Callable[..., Expansion] | None:
    """The parser of an uploaded rows file, by its file name, else its Content-Type."""
    name = (part.filename or "").lower()
    ctype = part.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if name.endswith(_JSONL_NAMES) or (not name.endswith(".csv") and ctype in _JSONL_TYPES):
        return variables.read_jsonl
    if name.endswith(".csv") or ctype == "text/csv":
        return variables.read_csv
    return None


def _chunks(part: BodyPartReader, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The part's bytes as they arrive, for a parser running in a worker thread: each chunk is
    read on the event loop (the request's stream lives there)."""
    while True:
        future = asyncio.run_coroutine_threadsafe(part.read_chunk(UPLOAD_CHUNK_BYTES), loop)
        try:
            chunk = future.result(timeout=UPLOAD_STALL_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DomainError(f"the upload sent nothing for {UPLOAD_STALL_S:.0f} s") from None
        if not chunk:
            return
        yield chunk


async def _read_rows(part: BodyPartReader, max_items: int) -> Expansion:
    parse = _rows_reader(part)
    if parse is None:
        raise Invalid.field(
            "rows",
            "upload a .jsonl (or .ndjson) or .csv file (by its name, or Content-Type "
            "application/x-ndjson or text/csv)",
        )
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.to_thread(parse, _chunks(part, loop), max_items=max_items)
    except VariablesError as exc:
        raise service.invalid(exc) from None


async def _read_spec(part: BodyPartReader) -> GenerationCreate:
    """The `spec` part: JSON, at most the API's body limit."""
    raw = bytearray()
    while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY_BYTES, actual_size=len(raw), text="the spec part is too large"
            )
    if not bytes(raw).strip():
        raise Invalid.field("spec", "the job as JSON is required")
    return decode_body(bytes(raw), GenerationCreate)


async def read_create(request: web.Request) -> tuple[GenerationCreate, Expansion | None]:
    """The job request and, for a multipart body, its uploaded rows (already parsed)."""
    if not request.content_type.startswith("multipart/"):
        return await read_json(request, GenerationCreate), None
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:  # no boundary, a broken header
        raise DomainError(f"malformed multipart body: {exc}") from None
    spec: GenerationCreate | None = None
    upload: Expansion | None = None
    max_items = request.app[SETTINGS].generation.max_items
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:
            raise DomainError(f"malformed multipart body: {exc}") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise DomainError("malformed multipart body: a nested multipart part")
        match part.name:
            case "spec" if spec is None:
                spec = await _read_spec(part)
            case "rows" if upload is None:
                upload = await _read_rows(part, max_items)
            case name:
                raise Invalid.field(
                    str(name), "unexpected part: send `spec` (the job as JSON) and `rows` (a file)"
                )
    if spec is None:
        raise Invalid.field("spec", "the job as JSON is required (a `spec` part)")
    return spec, upload


def _author(request: web.Request) -> str | None:
    token = request.get(TOKEN)
    return None if token is None else token.name


# --- handlers -----------------------------------------------------------------------------------


async def create_generation(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    body, upload = await read_create(request)
    settings = request.app[SETTINGS].generation
    async with request.app[POOL].acquire() as conn:
        job = await service.create_generation(
            conn, project, body, rows_upload=upload, created_by=_author(request), settings=settings
        )
    log.info("generation_created", job_id=str(job.id), project_id=str(project.id), total=job.total)
    response = json_response(generation_out(job), status=202)
    response.headers["Location"] = f"/api/v1/generations/{job.id}"
    return response


async def dry_run(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    shown = query_int(
        request, "prompts", default=service.DEFAULT_PROMPTS, minimum=0, maximum=service.MAX_PROMPTS
    )
    body, upload = await read_create(request)
    settings = request.app[SETTINGS].generation
    async with request.app[POOL].acquire() as conn:
        estimate = await service.dry_run(
            conn, project, body, rows_upload=upload, settings=settings, prompts_shown=shown
        )
    return json_response(estimate)


async def list_generations(request: web.Request) -> web.Response:
    """Newest first."""
    project = await load_project(request, "read")
    page = page_request(request)
    before = decode_time_id_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(conn, project.id, limit=page.limit + 1, before=before)
    return json_response(
        paginate(rows, page.limit, lambda j: encode_cursor(j.created_at, j.id), generation_out)
    )


async def load_generation(request: web.Request, raw_id: str) -> GenerationJob:
    """The job whose id is `raw_id`, if the token may read its project; NotFound otherwise."""
    return await load_of_project(request, raw_id, "generation", store.get)


async def get_generation(request: web.Request) -> web.Response:
    return json_response(generation_out(await load_generation(request, request.match_info["id"])))


async def list_items(request: web.Request) -> web.Response:
    """In index order; `?status=pending|done|failed` keeps one status."""
    job = await load_generation(request, request.match_info["id"])
    page = page_request(request)
    after = decode_int_cursor(page.cursor) if page.cursor else None
    status = request.query.get("status") or None
    if status is not None and status not in ITEM_STATUSES:
        raise Invalid.field("status", f"must be one of {', '.join(ITEM_STATUSES)}")
    async with request.app[POOL].acquire() as conn:
        rows = await store.items_page(
            conn, job.id, limit=page.limit + 1, after_idx=after, status=status
        )
    return json_response(paginate(rows, page.limit, lambda i: encode_cursor(i.idx), item_out))


async def cancel(request: web.Request) -> web.Response:
    """200 with the job, `cancelled` (409 once it has finished). The generator running it is
    told at once (core NATS) and starts no new call; if it misses the message it learns it at
    its next claim of items, which answers the job's status."""
    job = await load_generation(request, request.match_info["id"])
    require_scope(request, job.project_id, "deploy", not_found=f"no generation {str(job.id)!r}")
    now = datetime.now(UTC)
    async with request.app[POOL].acquire() as conn:
        cancelled = await service.cancel_generation(conn, job.id, now=now)
    message = GenerationCancelRequested(job_id=str(job.id), requested_at=now)
    try:
        await request.app[NC].publish(SUBJECT_GENERATION_CANCEL, encode(message))
    except Exception as exc:  # the row says cancelled: the next claim stops the generator
        log.warning("generation_cancel_not_published", job_id=str(job.id), error=repr(exc))
    log.info("generation_cancelled", job_id=str(job.id), was=job.status)
    return json_response(generation_out(cancelled))


def setup_generation_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects/{id}/generations", create_generation)
    app.router.add_post("/api/v1/projects/{id}/generations/dry-run", dry_run)
    app.router.add_get("/api/v1/projects/{id}/generations", list_generations)
    app.router.add_get("/api/v1/generations/{id}", get_generation)
    app.router.add_get("/api/v1/generations/{id}/items", list_items)
    app.router.add_post("/api/v1/generations/{id}/cancel", cancel)
