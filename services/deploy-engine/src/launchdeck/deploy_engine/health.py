"""The engine's HTTP server: `/health` (liveness) and `GET /api/health/<project>`.

`/api/health/<project>` is 200 when the project has an active release and the edge serves it
from the project's route, 503 otherwise (with the reason).
"""

from __future__ import annotations

from aiohttp import web

from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.releases import PROJECT_NAME_RE, ReleaseStore
from launchdeck.deploy_engine.sites import Sites

STORE = web.AppKey("store", ReleaseStore)
SITES = web.AppKey("sites", Sites)
PROBE = web.AppKey("probe", EdgeProbe)


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
    result = await probe.check(sites.project_host(project), project, timeout_s=1.0)
    body = {
        "project": project,
        "build_id": build_id,
        "healthy": result.ok,
        "edge_status": result.status,
        "reason": result.reason,
    }
    return web.json_response(body, status=200 if result.ok else 503)


def make_app(store: ReleaseStore, sites: Sites, probe: EdgeProbe) -> web.Application:
    app = web.Application()
    app[STORE] = store
    app[SITES] = sites
    app[PROBE] = probe
    app.router.add_get("/health", health)
    app.router.add_get("/api/health/{project}", project_health)
    return app
