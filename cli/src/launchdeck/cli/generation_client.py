"""The generation-job calls of the API, and `watch`: a job's progress, live, until it ends.

`watch` reads the `generation:<id>` WebSocket channel (whose first frame is the job's current
state) and, whenever no frame came for a while, asks `GET /api/v1/generations/{id}`: a job
still queued publishes nothing, and a lost final event must not leave the CLI waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import quote

import aiohttp
import msgspec

from launchdeck.cli.client import ApiError, LaunchdeckClient, UnexpectedResponse
from launchdeck.cli.generation_spec import GenerationSpec, spec_json
from launchdeck.contracts.api import (
    GenerationEstimate,
    GenerationItemOut,
    GenerationOut,
    GenerationPublish,
    GenerationPublished,
)
from launchdeck.contracts.messages import GenerationProgress
from launchdeck.contracts.statuses import GENERATION_FINISHED, GenerationItemStatus
from launchdeck.contracts.ws import generation_channel

POLL_INTERVAL_S = 5.0  # without a frame for this long, ask the API
POLL_ONLY_INTERVAL_S = 1.0  # when the WebSocket channel is refused
EXPORT_FORMATS = ("jsonl", "csv", "parquet")

_progress_decoder = msgspec.json.Decoder(GenerationProgress)


def _job(job_id: str) -> str:
    return f"/api/v1/generations/{quote(job_id, safe='')}"


def _project(project: str) -> str:
    return f"/api/v1/projects/{quote(project, safe='')}/generations"


# --- calls -------------------------------------------------------------------------------------


def _form(spec: GenerationSpec, rows: BinaryIO) -> aiohttp.FormData:
    """The multipart body: the job as the `spec` part, the rows file as the `rows` part."""
    assert spec.rows_file is not None
    form = aiohttp.FormData()
    form.add_field("spec", spec_json(spec).decode(), content_type="application/json")
    form.add_field("rows", rows, filename=spec.rows_file.name, content_type=spec.rows_content_type)
    return form


async def _post_spec(
    client: LaunchdeckClient,
    type_: type[GenerationOut] | type[GenerationEstimate],
    path: str,
    spec: GenerationSpec,
    params: dict[str, str] | None = None,
) -> GenerationOut | GenerationEstimate:
    if spec.rows_file is None:
        return await client._call(type_, "POST", path, body=spec.body, params=params)
    with spec.rows_file.open("rb") as rows:
        return await client._call(type_, "POST", path, form=_form(spec, rows), params=params)


async def create_generation(client: LaunchdeckClient, spec: GenerationSpec) -> GenerationOut:
    made = await _post_spec(client, GenerationOut, _project(spec.project), spec)
    assert isinstance(made, GenerationOut)
    return made


async def dry_run(
    client: LaunchdeckClient, spec: GenerationSpec, prompts: int
) -> GenerationEstimate:
    path = _project(spec.project) + "/dry-run"
    estimate = await _post_spec(
        client, GenerationEstimate, path, spec, params={"prompts": str(prompts)}
    )
    assert isinstance(estimate, GenerationEstimate)
    return estimate


def list_generations(
    client: LaunchdeckClient, project: str, page_size: int | None = None
) -> AsyncIterator[GenerationOut]:
    return client._pages(GenerationOut, _project(project), page_size)


async def get_generation(client: LaunchdeckClient, job_id: str) -> GenerationOut:
    return await client._call(GenerationOut, "GET", _job(job_id))


def generation_items(
    client: LaunchdeckClient,
    job_id: str,
    *,
    status: GenerationItemStatus | None = None,
    page_size: int | None = None,
) -> AsyncIterator[GenerationItemOut]:
    query: dict[str, str] | None = {"status": status} if status else None
    return client._pages(GenerationItemOut, _job(job_id) + "/items", page_size, query)


async def cancel_generation(client: LaunchdeckClient, job_id: str) -> GenerationOut:
    return await client._call(GenerationOut, "POST", _job(job_id) + "/cancel")


async def publish_generation(
    client: LaunchdeckClient, job_id: str, body: GenerationPublish
) -> GenerationPublished:
    return await client._call(GenerationPublished, "POST", _job(job_id) + "/publish", body=body)


async def download_export(
    client: LaunchdeckClient, job_id: str, sink: BinaryIO, *, fmt: str | None
) -> int:
    """The results in `fmt` (jsonl, csv, parquet), or with `fmt` None the manifests zip."""
    if fmt is None:
        return await client.download(_job(job_id) + "/manifests.zip", sink)
    return await client.download(_job(job_id) + "/export", sink, params={"format": fmt})


# --- following a job ---------------------------------------------------------------------------


def progress_of(job: GenerationOut, last: GenerationProgress | None) -> GenerationProgress:
    """The job as a progress update (the rate and ETA, which only events carry, from `last`)."""
    running = job.status == "running" and last is not None
    return GenerationProgress(
        job_id=str(job.id),
        project_id=str(job.project_id),
        status=job.status,
        total=job.total,
        done=job.done,
        failed=job.failed,
        tokens_in=job.tokens_in,
        tokens_out=job.tokens_out,
        cost_usd=job.cost_usd,
        items_per_s=last.items_per_s if running and last else 0.0,
        eta_s=last.eta_s if running and last else None,
        error=job.error,
        at=datetime.now(UTC),
    )


async def watch(
    client: LaunchdeckClient,
    job_id: str,
    show: Callable[[GenerationProgress], None],
    *,
    poll_s: float = POLL_INTERVAL_S,
) -> GenerationProgress:
    """Pass each update of the job to `show` until it has finished; the final update."""
    updates: asyncio.Queue[GenerationProgress | Exception] = asyncio.Queue()

    async def listen() -> None:
        try:
            async for frame in client.follow_events(generation_channel(job_id)):
                try:
                    updates.put_nowait(_progress_decoder.decode(frame.event))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise UnexpectedResponse(f"not a generation progress event: {exc}") from None
        except Exception as exc:
            updates.put_nowait(exc)

    listener = asyncio.create_task(listen())
    last: GenerationProgress | None = None
    interval = poll_s
    try:
        while True:
            try:
                update = await asyncio.wait_for(updates.get(), interval)
            except TimeoutError:
                update = progress_of(await get_generation(client, job_id), last)
            if isinstance(update, ApiError | UnexpectedResponse):
                # The channel was refused (or spoke nonsense): the job itself still answers.
                interval = POLL_ONLY_INTERVAL_S
                continue
            if isinstance(update, Exception):
                raise update
            if update.job_id != job_id:
                continue
            last = update
            show(update)
            if update.status in GENERATION_FINISHED:
                return update
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
