"""A build's page (its log streamed live by the page's script), its whole log as a file, and
cancelling it."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from launchdeck.contracts.api import BuildOut, ProjectOut
from launchdeck.contracts.statuses import BUILD_FINISHED
from launchdeck.control_api.dashboard.client import Api
from launchdeck.control_api.dashboard.render import redirect, render, secured
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import project_path


def _build_path(request: web.Request) -> str:
    return f"/api/v1/builds/{quote(request.match_info['id'], safe='')}"


async def show_build(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    build = await api.get(_build_path(request), BuildOut)
    project = await api.get(project_path(build.project_id), ProjectOut)
    return render(
        request,
        "build.html",
        session,
        build=build,
        project=project,
        finished=build.status in BUILD_FINISHED,
    )


async def download_log(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    build = await api.get(_build_path(request), BuildOut)
    text = await api.call("GET", f"{_build_path(request)}/logs")
    response = web.Response(body=text, content_type="text/plain", charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="build-{build.number}.log"'
    secured(response)
    return response


async def cancel(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    build = await api.send("POST", f"{_build_path(request)}/cancel", BuildOut)
    return redirect(f"/builds/{build.id}")
