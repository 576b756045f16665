"""HTTP handlers of `/api/v1/tokens` (admin only): create (the value shown once), list (never
the value), revoke (the row stays, for the audit log)."""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import TokenCreate, TokenCreated, TokenOut
from launchdeck.control_api.api.auth import TOKEN, TOKEN_CACHE, require_admin
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import POOL, SETTINGS
from launchdeck.control_api.api.pagination import (
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain import tokens as tokens_service
from launchdeck.control_api.domain.errors import Invalid, NotFound
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import tokens as store
from launchdeck.control_api.store.tokens import TokenRow


def token_out(row: TokenRow) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        scopes=row.scopes,
        project_id=row.project_id,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _request_id(request: web.Request) -> str | None:
    return request.headers.get("X-Request-Id", "")[:200] or None


async def create_token(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, TokenCreate)
    tokens_service.check_request(body)
    async with request.app[POOL].acquire() as conn:
        project_id = None
        if body.project_id is not None:
            try:
                project = await projects_service.resolve_project(conn, body.project_id)
            except NotFound:
                raise Invalid.field("project_id", "no such project") from None
            project_id = project.id
        value, row = await tokens_service.create_token(
            conn,
            request.app[SETTINGS].secret_key,
            body,
            project_id=project_id,
            created_by=request[TOKEN],
            request_id=_request_id(request),
        )
    created = TokenCreated(
        id=row.id,
        token=value,
        name=row.name,
        scopes=row.scopes,
        project_id=row.project_id,
        expires_at=row.expires_at,
        created_at=row.created_at,
    )
    response = json_response(created, status=201)
    response.headers["Location"] = f"/api/v1/tokens/{row.id}"
    response.headers["Cache-Control"] = "no-store"
    return response


async def list_tokens(request: web.Request) -> web.Response:
    require_admin(request)
    page = page_request(request)
    before = decode_time_id_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(conn, limit=page.limit + 1, before=before)
    return json_response(
        paginate(rows, page.limit, lambda t: encode_cursor(t.created_at, t.id), token_out)
    )


async def revoke_token(request: web.Request) -> web.Response:
    require_admin(request)
    raw_id = request.match_info["id"]
    token_id = parse_uuid(raw_id)
    if token_id is None:
        raise NotFound(f"no token {raw_id!r}")
    async with request.app[POOL].acquire() as conn:
        await tokens_service.revoke_token(
            conn, token_id, revoked_by=request[TOKEN], request_id=_request_id(request)
        )
    # At once on this replica; the others see it when their cached row ages out (≤ 1 s).
    request.app[TOKEN_CACHE].forget(token_id)
    return web.Response(status=204)


def setup_token_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/tokens", create_token)
    app.router.add_get("/api/v1/tokens", list_tokens)
    app.router.add_delete("/api/v1/tokens/{id}", revoke_token)
