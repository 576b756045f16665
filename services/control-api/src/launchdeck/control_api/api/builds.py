"""HTTP handlers of builds: trigger, a project's history, detail."""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import BuildCreate
from launchdeck.control_api.api.auth import require_scope
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.pagination import (
    decode_int_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.present import build_out
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain.builds import trigger_build
from launchdeck.control_api.domain.errors import NotFound
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import builds
from launchdeck.control_api.store.records import Build


async def create_build(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    body = await read_json(request, BuildCreate, empty_ok=True)
    async with request.app[POOL].acquire() as conn:
        build = await trigger_build(conn, project, body)
    response = json_response(build_out(build), status=202)
    response.headers["Location"] = f"/api/v1/builds/{build.id}"
    return response


async def list_builds(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    page = page_request(request)
    before = decode_int_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await builds.list_page(conn, project.id, limit=page.limit + 1, before_number=before)
    return json_response(paginate(rows, page.limit, lambda b: encode_cursor(b.number), build_out))


async def load_build(request: web.Request, raw_id: str) -> Build:
    """The build whose id is `raw_id`, if the token may read it; NotFound otherwise (also for a
    malformed id)."""
    build_id = parse_uuid(raw_id)
    build = None
    if build_id is not None:
        async with request.app[POOL].acquire() as conn:
            build = await builds.get(conn, build_id)
    if build is None:
        raise NotFound(f"no build {raw_id!r}")
    require_scope(request, build.project_id, "read", not_found=f"no build {raw_id!r}")
    return build


async def get_build(request: web.Request) -> web.Response:
    return json_response(build_out(await load_build(request, request.match_info["id"])))


def setup_build_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects/{id}/builds", create_build)
    app.router.add_get("/api/v1/projects/{id}/builds", list_builds)
    app.router.add_get("/api/v1/builds/{id}", get_build)
