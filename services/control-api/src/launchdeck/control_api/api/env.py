"""HTTP handlers of a project's env vars: list (names and targets), set, unset.

No response carries a value, not even masked: what is stored is sealed (`domain.sealing`), and
the only way out for a value is the `ld.rpc.env` answer to the service running one build or
deployment (`consumers.env_requests`). Listing needs `read`; setting and unsetting `write`, the
scope that may change the project (a value is as sensitive as the project's settings).
"""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import EnvVarSet
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import KEYRING, POOL
from launchdeck.control_api.api.pagination import (
    decode_str_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.present import env_var_out
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain import env_vars as env_service
from launchdeck.control_api.store import env_vars as store


async def list_env(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    page = page_request(request)
    after = decode_str_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(conn, project.id, limit=page.limit + 1, after_key=after)
    return json_response(paginate(rows, page.limit, lambda v: encode_cursor(v.key), env_var_out))


async def set_env(request: web.Request) -> web.Response:
    # The project first: another project's token gets 404 whatever it sends.
    project = await load_project(request, "write")
    key = env_service.check_key(request.match_info["key"])
    body = await read_json(request, EnvVarSet)
    async with request.app[POOL].acquire() as conn:
        var = await env_service.set_var(conn, request.app[KEYRING], project, key, body)
    return json_response(env_var_out(var))


async def unset_env(request: web.Request) -> web.Response:
    project = await load_project(request, "write")
    async with request.app[POOL].acquire() as conn:
        await env_service.unset_var(conn, project, request.match_info["key"])
    return web.Response(status=204)


def setup_env_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/projects/{id}/env", list_env)
    app.router.add_put("/api/v1/projects/{id}/env/{key}", set_env)
    app.router.add_delete("/api/v1/projects/{id}/env/{key}", unset_env)
