"""The audit log over HTTP: the middleware that records every successful write, and
`GET /api/v1/audit` (admin) and `GET /api/v1/projects/{id}/audit` (the project's writers).

An entry is written after the handler answered with a status below 400, for POST, PUT, PATCH and
DELETE under /api/v1 made with a token. Not here: the token routes (they record their entry in
the same transaction as the change) and the git-host webhooks (public; they record their own,
as `webhook:<host>`). The entry holds the route's parameters, the response's Location and the
names of the body's fields — never a value from the body (env values, secrets).
Written after the change committed: if Postgres fails in between, the entry is lost and logged
(`audit_entry_not_written`) rather than the request failing after it took effect.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.contracts.api import AuditEntryOut
from launchdeck.control_api.api.auth import AUDIT_PROJECT, TOKEN, require_admin
from launchdeck.control_api.api.json_io import json_response
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.pagination import (
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain.errors import Invalid
from launchdeck.control_api.store import audit
from launchdeck.control_api.store.audit import AuditEntry
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Recorded by their own handlers (tokens) or public with entries of their own (webhooks).
SELF_RECORDED_PREFIXES = ("/api/v1/tokens", "/api/v1/hooks/")

# Route → action name. A write route missing here is recorded as "<method> <route>" (so a new
# route is audited from its first day; give it a name here).
ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/projects"): "project.create",
    ("PATCH", "/api/v1/projects/{id}"): "project.update",
    ("DELETE", "/api/v1/projects/{id}"): "project.delete",
    ("POST", "/api/v1/projects/{id}/webhook-secret"): "project.webhook_secret.rotate",
    ("POST", "/api/v1/projects/{id}/builds"): "build.create",
    ("POST", "/api/v1/builds/{id}/cancel"): "build.cancel",
    ("POST", "/api/v1/projects/{id}/deployments"): "deployment.create",
    ("POST", "/api/v1/projects/{id}/rollback"): "deployment.rollback",
    ("POST", "/api/v1/projects/{id}/redeploy"): "deployment.redeploy",
    ("PUT", "/api/v1/projects/{id}/env/{key}"): "env.set",
    ("DELETE", "/api/v1/projects/{id}/env/{key}"): "env.delete",
    ("POST", "/api/v1/projects/{id}/schedules"): "schedule.create",
    ("PATCH", "/api/v1/schedules/{id}"): "schedule.update",
    ("DELETE", "/api/v1/schedules/{id}"): "schedule.delete",
    ("POST", "/api/v1/projects/{id}/runs"): "run.create",
    ("POST", "/api/v1/runs/{id}/cancel"): "run.cancel",
    ("POST", "/api/v1/templates"): "template.create",
    ("PUT", "/api/v1/templates/{id}"): "template.version",
    ("POST", "/api/v1/projects/{id}/generations"): "generation.create",
    ("POST", "/api/v1/generations/{id}/cancel"): "generation.cancel",
    ("POST", "/api/v1/generations/{id}/publish"): "generation.publish",
    # A dry run changes nothing, but it is a POST: recorded like the others, by name.
}
# POSTs that change nothing (a dry run): not audited, so the log holds only what changed.
READ_ONLY_POSTS = frozenset(
    {
        ("POST", "/api/v1/templates/{id}/render"),
        ("POST", "/api/v1/projects/{id}/generations/dry-run"),
    }
)
_MAX_FIELDS = 50
_MAX_FIELD_NAME = 100


def action_of(method: str, route: str) -> str:
    return ACTIONS.get((method, route)) or f"{method.lower()} {route}"


def _is_audited(request: web.Request) -> bool:
    return (
        request.method in WRITE_METHODS
        and request.path.startswith("/api/v1/")
        and not request.path.startswith(SELF_RECORDED_PREFIXES)
        and (request.method, _canonical(request)) not in READ_ONLY_POSTS
    )


def _canonical(request: web.Request) -> str:
    route = request.match_info.route.resource
    return route.canonical if route is not None else request.path


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if _is_audited(request) and response.status < 400 and TOKEN in request:
        await _record(request, response)
    return response


async def _field_names(request: web.Request) -> list[str]:
    """The top-level field names of the JSON body the handler read (its values never)."""
    if not request.body_exists or request.content_length == 0:
        return []
    try:
        body = json.loads(await request.read())  # cached by aiohttp: the handler read it
    except (ValueError, UnicodeDecodeError, RecursionError):  # any bytes may come: no 500
        return []
    if not isinstance(body, dict):
        return []
    return sorted(str(k)[:_MAX_FIELD_NAME] for k in body)[:_MAX_FIELDS]


async def _record(request: web.Request, response: web.StreamResponse) -> None:
    token = request[TOKEN]
    canonical = _canonical(request)
    detail: dict[str, object] = {"status": response.status}
    params = {k: v for k, v in request.match_info.items() if k != "id"}
    if params:
        detail["params"] = params
    fields = await _field_names(request)
    if fields:
        detail["fields"] = fields
    project_id = request.get(AUDIT_PROJECT)
    try:
        async with request.app[POOL].acquire() as conn:
            await audit.insert(
                conn,
                token_id=token.id,
                token_name=token.name,
                action=action_of(request.method, canonical),
                project_id=project_id,
                target=response.headers.get("Location") or request.path,
                detail=detail,
                request_id=request.headers.get("X-Request-Id", "")[:200] or None,
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error(
            "audit_entry_not_written",
            path=request.path,
            method=request.method,
            token_id=str(token.id),
            error=repr(exc),
        )


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=entry.at,
        token_id=entry.token_id,
        token_name=entry.token_name,
        action=entry.action,
        project_id=entry.project_id,
        target=entry.target,
        detail=entry.detail,
        request_id=entry.request_id,
    )


async def _page(
    request: web.Request, *, project_id: uuid.UUID | None, action: str | None
) -> web.Response:
    page = page_request(request)
    before = decode_time_id_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await audit.list_page(
            conn, limit=page.limit + 1, before=before, project_id=project_id, action=action
        )
    return json_response(paginate(rows, page.limit, lambda e: encode_cursor(e.at, e.id), entry_out))


def _action_filter(request: web.Request) -> str | None:
    action = request.query.get("action") or None
    if action is not None and (len(action) > 200 or not action.isprintable()):
        raise Invalid.field("action", "must be an action name such as 'build.create'")
    return action


async def list_audit(request: web.Request) -> web.Response:
    """Every entry (admin), newest first; `?project=` (id or name), `?action=`."""
    require_admin(request)
    project_id = None
    if project := request.query.get("project"):
        async with request.app[POOL].acquire() as conn:
            project_id = (await projects_service.resolve_project(conn, project)).id
    return await _page(request, project_id=project_id, action=_action_filter(request))


async def list_project_audit(request: web.Request) -> web.Response:
    """The project's entries, for tokens that may change it (write) and admins."""
    project = await load_project(request, "write")
    return await _page(request, project_id=project.id, action=_action_filter(request))


def setup_audit_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit", list_audit)
    app.router.add_get("/api/v1/projects/{id}/audit", list_project_audit)
