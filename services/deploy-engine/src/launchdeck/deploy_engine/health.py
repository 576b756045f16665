"""The engine's HTTP server: `/health` (liveness) and `GET /api/health/<project>`.

`/api/health/<project>` is 200 when the project's active deployment is healthy, 503 otherwise,
with the reason. A static site: it has an active release and the edge serves it from the
project's route. An app: every process of its live deployment runs and is ready (the web
process passed its health check since it last started; a worker stayed up), none is in a crash
loop, and a request through the edge to its health path reaches the web process. The body lists
the processes (`process`, `running`, `ready`, `healthy`, `pid`, `port`, `restarts`,
`last_exit`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from launchdeck.deploy_engine.apps.fleet import WEB, Fleet
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.releases import PROJECT_NAME_RE, ReleaseStore
from launchdeck.deploy_engine.sites import Sites

STORE = web.AppKey("store", ReleaseStore)
SITES = web.AppKey("sites", Sites)
PROBE = web.AppKey("probe", EdgeProbe)
FLEET = web.AppKey("fleet", Fleet)


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def project_health(request: web.Request) -> web.Response:
    project = request.match_info["project"]
    if not PROJECT_NAME_RE.fullmatch(project):
        return web.json_response(
            {"project": project, "healthy": False, "reason": "not a project name"}, status=404
        )
    store, sites, probe = request.app[STORE], request.app[SITES], request.app[PROBE]
    build_id = store.active_build(project)
    if build_id is None:
        return web.json_response(
            {"project": project, "healthy": False, "reason": "no active release"}, status=503
        )
    fleet = request.app.get(FLEET)
    manifest = fleet.manifest(project, build_id) if fleet is not None else None
    body: dict[str, Any] = {"project": project, "build_id": build_id}
    path = "/"
    healthy, reason = True, None
    if fleet is not None and manifest is not None:
        processes = fleet.report(project)
        body.update(kind=manifest.kind, processes=processes)
        sick = [p for p in processes if not p["healthy"]]
        if not processes:
            healthy, reason = False, "the app is not running"
        elif sick:
            healthy = False
            reason = f"the {sick[0]['process']} process is not healthy ({sick[0]['last_exit']})"
        if WEB not in manifest.processes:
            body.update(healthy=healthy, reason=reason)
            return web.json_response(body, status=200 if healthy else 503)
        path = manifest.health_path
    else:
        body["kind"] = "static"
    result = await probe.check(sites.project_host(project), project, timeout_s=1.0, path=path)
    if not result.ok:
        healthy, reason = False, reason or result.reason
    body.update(healthy=healthy, edge_status=result.status, reason=reason)
    return web.json_response(body, status=200 if healthy else 503)


def make_app(
    store: ReleaseStore, sites: Sites, probe: EdgeProbe, fleet: Fleet | None = None
) -> web.Application:
    app = web.Application()
    app[STORE] = store
    app[SITES] = sites
    app[PROBE] = probe
    if fleet is not None:
        app[FLEET] = fleet
    app.router.add_get("/health", health)
    app.router.add_get("/api/health/{project}", project_health)
    return app
