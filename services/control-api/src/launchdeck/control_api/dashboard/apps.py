"""The project's apps page: what the deploy-engine runs of it now (`GET /api/v1/projects/{id}/
apps`: status, health, restarts, last exit, uptime; a container's image size, limits and
state) and the app's live log (the page's script reads `/api/v1/projects/{id}/logs/ws`).

The table is also served alone (`/projects/NAME/apps/table`) for the script to fetch again
every few seconds and on the project's events."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from launchdeck.contracts.api import ProjectApps, ProjectOut
from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.render import render
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import project_path

MIB = 1024 * 1024


def uptime(seconds: float | None) -> str:
    """`42s`, `5m 03s`, `2h 07m`, `3d 4h`: coarser as it grows."""
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def megabytes(size: int | None) -> str:
    return "—" if size is None else f"{size / MIB:.1f} MB"


async def _apps(api: Api, name: str) -> tuple[ProjectApps | None, str | None]:
    """The engine's report, or why there is none (no engine answered: the page says so rather
    than failing as a whole, and the next refresh may have it)."""
    try:
        return await api.get(f"{project_path(name)}/apps", ProjectApps), None
    except ApiError as exc:
        if exc.status != 503:
            raise
        return None, exc.detail


def _context(
    project: ProjectOut, apps: ProjectApps | None, unavailable: str | None
) -> dict[str, Any]:
    instances = apps.instances if apps else []
    return {
        "project": project,
        "instances": instances,
        "containers": any(i.container for i in instances),
        "unavailable": unavailable,
        "uptime": uptime,
        "megabytes": megabytes,
    }


async def show_apps(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    name = request.match_info["name"]
    project = await api.get(project_path(name), ProjectOut)
    apps, unavailable = await _apps(api, name)
    return render(request, "apps.html", session, **_context(project, apps, unavailable))


async def apps_table(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    name = request.match_info["name"]
    project = await api.get(project_path(name), ProjectOut)
    apps, unavailable = await _apps(api, name)
    return render(request, "_apps.html", session, **_context(project, apps, unavailable))
