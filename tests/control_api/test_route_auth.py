"""Every route of the app, by the table below: no token → 401; a token of another project → 404
(or 403 where the route is not about one project); a read-only token of the project → 403 for
anything that changes it. The table must list every route the app has, so a new route cannot be
added without saying who may call it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from launchdeck.control_api.store.records import Build, Deployment, Project
from tests.control_api.helpers import new_build, new_project, succeed
from tests.control_api.support import Api, token

PUBLIC = {("GET", "/"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    # What a token of another project (all three scopes) gets: 404 when the route names a
    # resource of the project, else the answer for that token.
    other_project: int
    # What a read-only token of the project gets (403 when it needs deploy or write).
    read_only: int


ROUTES = [
    Route("POST", "/api/v1/projects", other_project=403, read_only=403),
    Route("GET", "/api/v1/projects", other_project=200, read_only=200),
    Route("GET", "/api/v1/projects/{id}", other_project=404, read_only=200),
    Route("PATCH", "/api/v1/projects/{id}", other_project=404, read_only=403),
    Route("DELETE", "/api/v1/projects/{id}", other_project=404, read_only=403),
    Route("POST", "/api/v1/projects/{id}/builds", other_project=404, read_only=403),
    Route("GET", "/api/v1/projects/{id}/builds", other_project=404, read_only=200),
    Route("GET", "/api/v1/builds/{id}", other_project=404, read_only=200),
    Route("GET", "/api/v1/builds/{id}/logs", other_project=404, read_only=200),
    Route("GET", "/api/v1/builds/{id}/logs/ws", other_project=404, read_only=101),
    Route("POST", "/api/v1/builds/{id}/cancel", other_project=404, read_only=403),
    Route("GET", "/api/v1/projects/{id}/logs", other_project=404, read_only=200),
    Route("GET", "/api/v1/projects/{id}/logs/ws", other_project=404, read_only=101),
    Route("GET", "/api/v1/projects/{id}/deployments", other_project=404, read_only=200),
    Route("POST", "/api/v1/projects/{id}/deployments", other_project=404, read_only=403),
    Route("POST", "/api/v1/projects/{id}/rollback", other_project=404, read_only=403),
    Route("POST", "/api/v1/projects/{id}/redeploy", other_project=404, read_only=403),
    Route("GET", "/api/v1/projects/{id}/env", other_project=404, read_only=200),
    Route("PUT", "/api/v1/projects/{id}/env/{key}", other_project=404, read_only=403),
    Route("DELETE", "/api/v1/projects/{id}/env/{key}", other_project=404, read_only=403),
    Route("GET", "/api/v1/deployments/{id}", other_project=404, read_only=200),
    Route("GET", "/api/v1/ws", other_project=101, read_only=101),
]


@dataclass(frozen=True)
class Subject:
    project: Project
    build: Build
    deployment: Deployment

    def path(self, pattern: str) -> str:
        if pattern.startswith("/api/v1/builds/"):
            value = self.build.id
        elif pattern.startswith("/api/v1/deployments/"):
            value = self.deployment.id
        else:
            value = self.project.id
        return pattern.replace("{id}", str(value)).replace("{key}", "API_TOKEN")

    def body(self, route: Route) -> dict[str, object] | None:
        """A valid body, so the answer is about authorisation and not about the input."""
        match (route.method, route.pattern):
            case ("POST", "/api/v1/projects"):
                return {"name": f"auth-{uuid.uuid4().hex[:8]}", "repo_url": "https://x.invalid/r"}
            case ("PATCH", _):
                return {"branch": "main"}
            case ("POST", "/api/v1/projects/{id}/builds"):
                return {"deploy": False}
            case ("POST", "/api/v1/projects/{id}/deployments"):
                return {"build_id": str(self.build.id)}
            case ("PUT", "/api/v1/projects/{id}/env/{key}"):
                return {"value": "a value", "targets": ["build"]}
            case ("POST", _):
                return {}
        return None


@pytest.fixture
async def subject(pool: asyncpg.Pool) -> Subject:
    project = await new_project(pool)
    build = await new_build(pool, project)
    deployment = await succeed(pool, build)
    return Subject(project, build, deployment)


def test_the_table_lists_every_route(api: Api) -> None:
    """A route missing here (or gone from the app) fails: its access rules must be stated."""
    app_routes = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert app_routes - PUBLIC == {(r.method, r.pattern) for r in ROUTES}


async def status_of(api: Api, route: Route, subject: Subject, bearer: str) -> int:
    path = subject.path(route.pattern)
    if route.pattern.endswith("/ws"):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            ws = await api.client.ws_connect(path, headers=headers)
        except Exception as exc:  # the failed handshake carries the status
            return int(getattr(exc, "status", 0))
        await ws.close()
        return 101
    reply = await api.call(route.method, path, subject.body(route), token=bearer)
    return reply.status


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
async def test_no_token_is_401(api: Api, subject: Subject, route: Route) -> None:
    api.token = None
    assert await status_of(api, route, subject, "") == 401


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
async def test_another_projects_token(api: Api, subject: Subject, route: Route) -> None:
    other = token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))
    assert await status_of(api, route, subject, other) == route.other_project


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
async def test_a_read_only_token(api: Api, subject: Subject, route: Route) -> None:
    reader = token(["read"], project_id=str(subject.project.id))
    assert await status_of(api, route, subject, reader) == route.read_only
