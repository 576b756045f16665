"""A project's env vars: names and targets only (a value never reaches the browser: the API
does not give it out), set, delete, and the redeploy that applies them."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from launchdeck.contracts.api import EnvVarOut, Page, ProjectOut
from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.forms import text, texts
from launchdeck.control_api.dashboard.projects import page_of
from launchdeck.control_api.dashboard.render import redirect, render
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import project_path

TARGETS = ("build", "preview", "production")


async def _env_page(
    request: web.Request,
    session: Session,
    api: Api,
    *,
    changed: bool = False,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    path = project_path(request.match_info["name"])
    project = await api.get(path, ProjectOut)
    env = await api.get(f"{path}/env", Page[EnvVarOut], limit="200")
    return render(
        request,
        "env.html",
        session,
        status=status,
        error=error,
        project=project,
        env=env.items,
        targets=TARGETS,
        changed=changed,
    )


async def show_env(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    return await _env_page(request, session, api, changed="changed" in request.query)


def _var_path(request: web.Request, key: str) -> str:
    return f"{project_path(request.match_info['name'])}/env/{quote(key, safe='')}"


def _changed(request: web.Request) -> web.Response:
    return redirect(f"{page_of(request.match_info['name'])}/env?changed=1")


async def set_var(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    form = await request.post()
    key = text(form, "key")
    value = form.get("value")  # as typed: leading or trailing spaces may be meant
    body: dict[str, object] = {"value": value if isinstance(value, str) else ""}
    if targets := texts(form, "targets"):
        body["targets"] = targets
    try:
        if not key:
            raise ApiError(422, "Unprocessable Content", "key: a name is required")
        await api.send("PUT", _var_path(request, key), EnvVarOut, body)
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _env_page(request, session, api, status=exc.status, error=exc.detail)
    return _changed(request)


async def delete_var(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    key = text(await request.post(), "key")
    await api.call("DELETE", _var_path(request, key))
    return _changed(request)
