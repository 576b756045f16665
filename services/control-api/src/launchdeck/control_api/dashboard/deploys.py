"""The project page's actions: deploy (a new build), roll back or promote (an existing build),
redeploy (the live build again, with the current env vars)."""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import BuildOut, DeploymentOut
from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.forms import text
from launchdeck.control_api.dashboard.projects import page_of
from launchdeck.control_api.dashboard.render import redirect
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import project_path


async def deploy(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    name = request.match_info["name"]
    body: dict[str, object] = {"deploy": True}
    if ref := text(await request.post(), "ref"):
        body["ref"] = ref
    build = await api.send("POST", f"{project_path(name)}/builds", BuildOut, body)
    return redirect(f"/builds/{build.id}")


async def _to_production(request: web.Request, api: Api) -> web.StreamResponse:
    """Deploy an existing succeeded build to production: a rollback to an older build, or a
    preview's build promoted."""
    name = request.match_info["name"]
    build_id = text(await request.post(), "build_id")
    if not build_id:
        raise ApiError(422, "Unprocessable Content", "build_id: which build to deploy is missing")
    await api.send(
        "POST",
        f"{project_path(name)}/deployments",
        DeploymentOut,
        {"build_id": build_id, "environment": "production"},
    )
    return redirect(page_of(name))


async def rollback(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    return await _to_production(request, api)


async def promote(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    return await _to_production(request, api)


async def redeploy(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    name = request.match_info["name"]
    await api.send("POST", f"{project_path(name)}/redeploy", DeploymentOut, {})
    return redirect(page_of(name))
