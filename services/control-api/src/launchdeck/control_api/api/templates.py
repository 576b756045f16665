"""HTTP handlers of prompt templates (`/api/v1/templates`).

Templates belong to no project (a generation job of any project may use one), so access is not
per project: any valid token may list, read and dry-run them; creating a template or a new
version needs an admin token — a template runs inside the generator's sandbox on every item of a
job, and its author can spend the job's budget, so writing one is an operator's act.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from launchdeck.contracts.api import (
    RenderedStepOut,
    TemplateCreate,
    TemplateOut,
    TemplateRender,
    TemplateRendered,
    TemplateUpdate,
)
from launchdeck.control_api.api.auth import TOKEN, require_admin
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.pagination import (
    decode_str_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.domain import templates as service
from launchdeck.control_api.store import templates as store
from launchdeck.control_api.store.templates import TemplateVersion

MAX_VERSION = 2**31 - 1


def template_out(template: TemplateVersion) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        version=template.version,
        steps=service.steps_of(template),
        versions=template.versions,
        created_at=template.created_at,
        created_by=template.created_by,
    )


def _author(request: web.Request) -> str | None:
    token = request.get(TOKEN)
    return None if token is None else token.name


async def _load(request: web.Request, version: int | None) -> TemplateVersion:
    async with request.app[POOL].acquire() as conn:
        return await service.find_template(conn, request.match_info["id"], version)


async def create_template(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, TemplateCreate)
    async with request.app[POOL].acquire() as conn:
        template = await service.create_template(conn, body, created_by=_author(request))
    response = json_response(template_out(template), status=201)
    response.headers["Location"] = f"/api/v1/templates/{template.id}"
    return response


async def list_templates(request: web.Request) -> web.Response:
    page = page_request(request)
    after = decode_str_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(conn, limit=page.limit + 1, after_name=after)
    return json_response(paginate(rows, page.limit, lambda t: encode_cursor(t.name), template_out))


async def get_template(request: web.Request) -> web.Response:
    version = query_int(request, "version", default=0, minimum=1, maximum=MAX_VERSION)
    return json_response(template_out(await _load(request, version or None)))


async def put_template(request: web.Request) -> web.Response:
    """A new version: 201 (something new exists), with the template at that version."""
    require_admin(request)
    template = await _load(request, None)
    body = await read_json(request, TemplateUpdate)
    async with request.app[POOL].acquire() as conn:
        updated = await service.add_version(conn, template, body, created_by=_author(request))
    response = json_response(template_out(updated), status=201)
    response.headers["Location"] = f"/api/v1/templates/{updated.id}?version={updated.version}"
    return response


async def render_template(request: web.Request) -> web.Response:
    """The dry run: each step's prompt for the given variables, no model called."""
    template = await _load(request, None)  # an unknown template is a 404 before the body
    body = await read_json(request, TemplateRender, empty_ok=True)
    if body.version is not None and body.version != template.version:
        template = await _load(request, body.version)
    # In a thread: a template's render is bounded (libs.prompts) but may still take a moment,
    # and the event loop serves everyone else meanwhile.
    rendered = await asyncio.to_thread(service.dry_run, template, body.variables)
    return json_response(
        TemplateRendered(
            template_id=template.id,
            name=template.name,
            version=template.version,
            steps=[
                RenderedStepOut(name=s.name, output=s.output, prompt=s.prompt) for s in rendered
            ],
        )
    )


def setup_template_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/templates", create_template)
    app.router.add_get("/api/v1/templates", list_templates)
    app.router.add_get("/api/v1/templates/{id}", get_template)
    app.router.add_put("/api/v1/templates/{id}", put_template)
    app.router.add_post("/api/v1/templates/{id}/render", render_template)
