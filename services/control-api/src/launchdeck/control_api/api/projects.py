"""HTTP handlers of `/api/v1/projects` (create, list, get, update, delete)."""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import ProjectCreate, ProjectUpdate
from launchdeck.control_api.api.auth import (
    AUDIT_PROJECT,
    is_admin,
    principal,
    project_restriction,
    require_admin,
    require_scope,
)
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import KEYRING, POOL, SETTINGS
from launchdeck.control_api.api.pagination import (
    decode_str_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.present import project_created, project_out
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain.domains import DomainPolicy
from launchdeck.control_api.store import projects as store
from launchdeck.control_api.store.records import Project


async def load_project(request: web.Request, scope: str) -> Project:
    """The project named by the `{id}` path segment (id or name), if the token may use it."""
    id_or_name = request.match_info["id"]
    async with request.app[POOL].acquire() as conn:
        project = await projects_service.resolve_project(conn, id_or_name)
    require_scope(request, project.id, scope, not_found=f"no project {id_or_name!r}")
    return project


def domain_policy(request: web.Request) -> DomainPolicy:
    """The names no project may claim, from the settings (base domain, the API's hosts)."""
    settings = request.app[SETTINGS]
    return DomainPolicy(
        base_domain=settings.base_domain, api_hosts=frozenset(settings.api_public_hosts)
    )


async def create_project(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, ProjectCreate)
    async with request.app[POOL].acquire() as conn:
        created = await projects_service.create_project(
            conn,
            body,
            keyring=request.app[KEYRING],
            policy=domain_policy(request),
            reveal_owner=is_admin(principal(request)),
        )
    project = created.project
    request[AUDIT_PROJECT] = project.id  # for the audit entry (no `require_scope` here)
    response = json_response(project_created(project, created.webhook_secret), status=201)
    response.headers["Location"] = f"/api/v1/projects/{project.id}"
    return response


async def list_projects(request: web.Request) -> web.Response:
    page = page_request(request)
    after = decode_str_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(
            conn, limit=page.limit + 1, after_name=after, only_id=project_restriction(request)
        )
    return json_response(paginate(rows, page.limit, lambda p: encode_cursor(p.name), project_out))


async def get_project(request: web.Request) -> web.Response:
    return json_response(project_out(await load_project(request, "read")))


async def update_project(request: web.Request) -> web.Response:
    project = await load_project(request, "write")
    body = await read_json(request, ProjectUpdate)
    async with request.app[POOL].acquire() as conn:
        # A taken domain's owner is named only to a token that may see every project.
        updated = await projects_service.update_project(
            conn,
            project,
            body,
            policy=domain_policy(request),
            reveal_owner=is_admin(principal(request)),
        )
    return json_response(project_out(updated))


async def delete_project(request: web.Request) -> web.Response:
    project = await load_project(request, "write")
    async with request.app[POOL].acquire() as conn:
        await projects_service.delete_project(conn, project)
    return web.Response(status=204)


def setup_project_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects", create_project)
    app.router.add_get("/api/v1/projects", list_projects)
    app.router.add_get("/api/v1/projects/{id}", get_project)
    app.router.add_patch("/api/v1/projects/{id}", update_project)
    app.router.add_delete("/api/v1/projects/{id}", delete_project)
