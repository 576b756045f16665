"""HTTP handlers of a generation job's results: the export (JSONL, CSV, Parquet), the per-group
manifests (a zip of all, or one), and publish (a static site, deployed).

Files are streamed: the response starts once the first chunk is ready (so a missing job or a
database that is away is still a problem+json answer) and each chunk is written as the store's
cursor and `libs.exports` produce it, with chunked transfer encoding. A failure after the first
byte cannot become a problem any more: it is logged and the connection is cut, so the client
sees an incomplete transfer rather than a file that looks whole.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

from aiohttp import web

from launchdeck.contracts.api import GenerationPublish
from launchdeck.contracts.messages import Artifact
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS, artifact_key
from launchdeck.control_api.api.auth import require_scope
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import JS, POOL, SETTINGS
from launchdeck.control_api.domain import generation_export, generation_publish
from launchdeck.control_api.domain.errors import NotFound
from launchdeck.control_api.domain.generation_export import MEDIA_TYPES
from launchdeck.control_api.domain.projects import parse_uuid, resolve_project
from launchdeck.control_api.store import generation_results, projects
from launchdeck.control_api.store.generation_results import ResultsJob
from launchdeck.libs.logging import get_logger
from launchdeck.libs.objects import put_file
from launchdeck.libs.tarball import Package

log = get_logger(__name__)


async def load_job(request: web.Request, scope: str) -> ResultsJob:
    """The job of the `{id}` path segment, if the token may use its project with `scope`."""
    raw = request.match_info["id"]
    job_id = parse_uuid(raw)
    job = None
    if job_id is not None:
        async with request.app[POOL].acquire() as conn:
            job = await generation_results.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"no generation {raw!r}")
    require_scope(request, job.project_id, scope, not_found=f"no generation {raw!r}")
    return job


async def stream_file(
    request: web.Request,
    chunks: AsyncGenerator[bytes, None],
    *,
    content_type: str,
    filename: str | None,
) -> web.StreamResponse:
    """Write `chunks` as the response body, as they come (module docstring)."""
    async with aclosing(chunks):
        first = await anext(chunks, None)  # errors before any byte are still problems
        response = web.StreamResponse(headers={"Content-Type": content_type})
        if filename is not None:
            response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionError:  # the client went away: nothing to tell it
            return response
        except Exception:
            log.exception("stream_failed", path=request.path)
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


async def export(request: web.Request) -> web.StreamResponse:
    job = await load_job(request, "read")
    query = dict(request.query)
    query.setdefault("format", "jsonl")
    wanted = generation_export.parse_export_request(query)
    async with request.app[POOL].acquire() as conn:
        return await stream_file(
            request,
            generation_export.export_chunks(conn, job, wanted),
            content_type=MEDIA_TYPES[wanted.format],
            filename=f"generation-{job.id}.{wanted.format}",
        )


async def manifests_zip(request: web.Request) -> web.StreamResponse:
    job = await load_job(request, "read")
    async with request.app[POOL].acquire() as conn:
        return await stream_file(
            request,
            generation_export.manifests_zip_chunks(conn, job),
            content_type=MEDIA_TYPES["zip"],
            filename=f"generation-{job.id}-manifests.zip",
        )


async def manifest(request: web.Request) -> web.StreamResponse:
    job = await load_job(request, "read")
    async with request.app[POOL].acquire() as conn:
        chunks = await generation_export.manifest_chunks(conn, job, request.match_info["group"])
        return await stream_file(request, chunks, content_type=MEDIA_TYPES["json"], filename=None)


async def publish(request: web.Request) -> web.Response:
    """Deploy scope on the job's project, and on the target project when it is another."""
    job = await load_job(request, "deploy")
    body = await read_json(request, GenerationPublish, empty_ok=True)
    async with request.app[POOL].acquire() as conn:
        if body.project is None:
            target = await projects.get(conn, job.project_id)
            if target is None:
                raise NotFound(f"no generation {request.match_info['id']!r}")
        else:
            target = await resolve_project(conn, body.project)
    # Last, so the audit entry and the builds cache name the project deployed to.
    require_scope(request, target.id, "deploy", not_found=f"no project {body.project!r}")
    step = generation_publish.page_step(job, body.step)
    settings = request.app[SETTINGS]
    js = request.app[JS]

    async def store_artifact(build_id: uuid.UUID, package: Package) -> Artifact:
        key = artifact_key(str(build_id))
        await put_file(
            js,
            OBJECT_STORE_ARTIFACTS,
            key,
            package.path,
            sha256=package.sha256,
            size=package.size,
            description=f"build {build_id} (generation {job.id})",
        )
        return Artifact(key=key, sha256=package.sha256, size=package.size, kind="static")

    published = await generation_publish.publish(
        request.app[POOL],
        job,
        target,
        step=step,
        environment=body.environment,
        base_domain=settings.base_domain,
        edge_url=settings.scheduler.edge_url,
        store_artifact=store_artifact,
    )
    response = json_response(published, status=202)
    response.headers["Location"] = f"/api/v1/deployments/{published.deployment_id}"
    return response


def setup_generation_result_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/generations/{id}/export", export)
    app.router.add_get("/api/v1/generations/{id}/manifests.zip", manifests_zip)
    app.router.add_get("/api/v1/generations/{id}/manifests/{group}", manifest)
    app.router.add_post("/api/v1/generations/{id}/publish", publish)
