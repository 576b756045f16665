"""Project pages: the list (with the new-project form), one project, its settings and delete."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from launchdeck.contracts.api import Page, ProjectCreated, ProjectOut
from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.forms import BUILD_FIELDS, build_settings, lines, text
from launchdeck.control_api.dashboard.render import redirect, render
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import ProjectState, load_state, project_path

# The list shows this many projects (the API's largest page).
LIST_LIMIT = 200
NEW_PROJECT_FIELDS = ("name", "repo_url", "branch", *BUILD_FIELDS)


def page_of(name: str) -> str:
    return f"/projects/{quote(name, safe='')}"


async def _states(api: Api) -> list[ProjectState]:
    projects = await api.get("/api/v1/projects", Page[ProjectOut], limit=str(LIST_LIMIT))
    return list(
        await asyncio.gather(*(load_state(api, str(p.id), builds=1) for p in projects.items))
    )


async def list_projects(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    return render(
        request, "projects.html", session, states=await _states(api), values={"branch": "main"}
    )


async def create_project(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    form = await request.post()
    body = {
        "name": text(form, "name"),
        "repo_url": text(form, "repo_url"),
        "branch": text(form, "branch") or "main",
        "build": build_settings(form),
    }
    try:
        created = await api.send("POST", "/api/v1/projects", ProjectCreated, body)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        values = {name: text(form, name) for name in NEW_PROJECT_FIELDS}
        return render(
            request,
            "projects.html",
            session,
            status=exc.status,
            states=await _states(api),
            values=values,
            error=exc.detail,
        )
    return redirect(page_of(created.name))


async def show_project(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    state = await load_state(api, request.match_info["name"])
    return render(request, "project.html", session, state=state)


async def live_fragment(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    """The parts of the project page that change as builds and deployments move (the page's
    script fetches it again when a project event arrives)."""
    state = await load_state(api, request.match_info["name"])
    return render(request, "_live.html", session, state=state)


async def _settings_page(
    request: web.Request,
    session: Session,
    project: ProjectOut,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    build = msgspec.to_builtins(project.build)
    return render(
        request, "settings.html", session, status=status, project=project, build=build, error=error
    )


async def show_settings(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    project = await api.get(project_path(request.match_info["name"]), ProjectOut)
    return await _settings_page(request, session, project)


async def save_settings(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    path = project_path(request.match_info["name"])
    project = await api.get(path, ProjectOut)
    form = await request.post()
    body: dict[str, Any] = {
        "branch": text(form, "branch") or project.branch,
        "build": build_settings(form, msgspec.to_builtins(project.build)),
        "domains": lines(form, "domains"),
    }
    try:
        updated = await api.send("PATCH", path, ProjectOut, body)
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _settings_page(request, session, project, status=exc.status, error=exc.detail)
    return redirect(page_of(updated.name))


async def delete_project(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    path = project_path(request.match_info["name"])
    project = await api.get(path, ProjectOut)
    if text(await request.post(), "confirm_name") != project.name:
        return await _settings_page(
            request,
            session,
            project,
            status=422,
            error=f"type the project's name ({project.name}) to delete it",
        )
    await api.call("DELETE", path)
    return redirect("/projects")
