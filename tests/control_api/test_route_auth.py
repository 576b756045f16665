"""The authorisation matrix: every route of the app by every kind of caller, by the table below.

One row per route: `Route(method, pattern, needs=<the weakest scope that may call it>, ok=<the
answer to a caller allowed to>, other=<what a token of another project gets>)`. The expected
status of each cell follows from the row (`expected`):

    no token, expired, revoked   → 401
    other project                → `other` (404: the resource does not exist for it; or the
                                   answer to that token when the route is not about one project)
    read / deploy / write        → `ok` if that scope grants `needs` (write ⊇ deploy ⊇ read),
                                   else 403; `needs="admin"` → 403 for all three
    admin                        → `ok`

The table must list every route the app has (WebSocket handshakes included: `ok=101`), so a new
route cannot be added without saying who may call it: add one row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import pytest

from launchdeck.contracts.api import (
    BuildAction,
    GenerationCreate,
    GenerationModel,
    ScheduleCreate,
    TemplateCreate,
    TemplateStep,
)
from launchdeck.control_api.api.openapi import ROUTES as DOCUMENTED_ROUTES
from launchdeck.control_api.dashboard.routes import is_dashboard_route
from launchdeck.control_api.domain.generations import create_generation
from launchdeck.control_api.domain.runs import request_run
from launchdeck.control_api.domain.schedules import create_schedule
from launchdeck.control_api.domain.templates import create_template
from launchdeck.control_api.settings import GenerationSettings
from launchdeck.control_api.store.records import Build, Deployment, Project, Run
from launchdeck.libs.tokens import mint, register
from tests.control_api.helpers import new_build, new_project, succeed
from tests.control_api.log_support import receive_frame
from tests.control_api.support import SECRET, Api, token

PUBLIC = {
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    # The API's description and its HTML reference (api/openapi.py): public by design.
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/docs"),
}

Scope = Literal["read", "deploy", "write", "admin"]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    needs: Scope = "read"
    ok: int = 200
    other: int = 404


ROUTES = [
    Route("POST", "/api/v1/projects", needs="admin", ok=201, other=403),
    Route("GET", "/api/v1/projects", other=200),  # lists only the token's own project
    Route("GET", "/api/v1/projects/{id}"),
    Route("PATCH", "/api/v1/projects/{id}", needs="write"),
    Route("DELETE", "/api/v1/projects/{id}", needs="write", ok=204),
    Route("POST", "/api/v1/projects/{id}/builds", needs="deploy", ok=202),
    Route("GET", "/api/v1/projects/{id}/builds"),
    Route("GET", "/api/v1/builds/{id}"),
    Route("GET", "/api/v1/builds/{id}/logs"),
    Route("GET", "/api/v1/builds/{id}/logs/ws", ok=101),
    # The subject's build has finished: an allowed cancel is refused for that (409), not for auth.
    Route("POST", "/api/v1/builds/{id}/cancel", needs="deploy", ok=409),
    Route("GET", "/api/v1/projects/{id}/logs"),
    Route("GET", "/api/v1/projects/{id}/logs/ws", ok=101),
    # No deploy-engine answers in this test: an allowed caller gets that 503, not an auth error.
    Route("GET", "/api/v1/projects/{id}/apps", ok=503),
    Route("GET", "/api/v1/projects/{id}/deployments"),
    Route("POST", "/api/v1/projects/{id}/deployments", needs="deploy", ok=202),
    # Only one production deployment so far: nothing to roll back to.
    Route("POST", "/api/v1/projects/{id}/rollback", needs="deploy", ok=409),
    # The subject's deployment is pending, not live: nothing to redeploy yet.
    Route("POST", "/api/v1/projects/{id}/redeploy", needs="deploy", ok=409),
    Route("GET", "/api/v1/projects/{id}/env"),
    Route("PUT", "/api/v1/projects/{id}/env/{key}", needs="write"),
    Route("DELETE", "/api/v1/projects/{id}/env/{key}", needs="write", ok=404),  # none set
    Route("GET", "/api/v1/deployments/{id}"),
    Route("GET", "/api/v1/ws", ok=101, other=101),  # channels are checked per subscription
    Route("POST", "/api/v1/tokens", needs="admin", ok=201, other=403),
    Route("GET", "/api/v1/tokens", needs="admin", other=403),
    Route("DELETE", "/api/v1/tokens/{id}", needs="admin", ok=204, other=403),
    Route("GET", "/api/v1/audit", needs="admin", other=403),
    Route("GET", "/api/v1/projects/{id}/audit", needs="write"),
    Route("POST", "/api/v1/projects/{id}/webhook-secret", needs="write"),
    # Git-host webhooks take no token: a bearer token of any kind opens nothing, only the
    # project's signature does (none is sent here), so every caller gets 401.
    Route("POST", "/api/v1/hooks/github/{project}", ok=401, other=401),
    Route("POST", "/api/v1/hooks/gitlab/{project}", ok=401, other=401),
    Route("POST", "/api/v1/hooks/gitea/{project}", ok=401, other=401),
    Route("POST", "/api/v1/hooks/generic/{project}", ok=401, other=401),
    Route("POST", "/api/v1/projects/{id}/runs", needs="deploy", ok=202),
    Route("GET", "/api/v1/projects/{id}/runs"),
    Route("GET", "/api/v1/runs/{id}"),
    Route("GET", "/api/v1/runs/{id}/logs"),
    Route("POST", "/api/v1/runs/{id}/cancel", needs="deploy", ok=202),  # a queued run
    Route("POST", "/api/v1/projects/{id}/schedules", needs="write", ok=201),
    Route("GET", "/api/v1/projects/{id}/schedules"),
    Route("GET", "/api/v1/schedules/{id}"),
    Route("PATCH", "/api/v1/schedules/{id}", needs="write"),
    Route("DELETE", "/api/v1/schedules/{id}", needs="write", ok=204),
    # Templates belong to no project: any token reads and dry-runs them; only admins write.
    Route("POST", "/api/v1/templates", needs="admin", ok=201, other=403),
    Route("GET", "/api/v1/templates", other=200),
    Route("GET", "/api/v1/templates/{id}", other=200),
    Route("PUT", "/api/v1/templates/{id}", needs="admin", ok=201, other=403),
    Route("POST", "/api/v1/templates/{id}/render", other=200),
    Route("POST", "/api/v1/projects/{id}/generations", needs="deploy", ok=202),
    Route("POST", "/api/v1/projects/{id}/generations/dry-run"),  # changes nothing
    Route("GET", "/api/v1/projects/{id}/generations"),
    Route("GET", "/api/v1/generations/{id}"),
    Route("GET", "/api/v1/generations/{id}/items"),
    Route("POST", "/api/v1/generations/{id}/cancel", needs="deploy"),  # a queued job
    Route("GET", "/api/v1/generations/{id}/export"),
    Route("GET", "/api/v1/generations/{id}/timeline"),
    Route("GET", "/api/v1/projects/{id}/generations/costs"),
    Route("GET", "/api/v1/generations/{id}/manifests.zip"),
    # The subject's job has no group_by (so no group's manifest) and no done item to publish.
    Route("GET", "/api/v1/generations/{id}/manifests/{group}", ok=404),
    Route("POST", "/api/v1/generations/{id}/publish", needs="deploy", ok=409),
]

CALLERS = ["no token", "expired", "revoked", "other project", "read", "deploy", "write", "admin"]
_GRANTS: dict[str, set[str]] = {
    "read": {"read"},
    "deploy": {"read", "deploy"},
    "write": {"read", "deploy", "write"},
}


def expected(route: Route, caller: str) -> int:
    if caller in {"no token", "expired", "revoked"}:
        return 401
    if caller == "other project":
        return route.other
    if caller == "admin":
        return route.ok
    return route.ok if route.needs in _GRANTS[caller] else 403


@dataclass(frozen=True)
class Subject:
    project: Project
    build: Build
    deployment: Deployment
    spare_token_id: str  # what `DELETE /api/v1/tokens/{id}` revokes
    run: Run
    schedule_id: str = ""  # a schedule of the project (`/api/v1/schedules/{id}`)
    template_id: str = ""  # a template (`/api/v1/templates/{id}`), of no project
    generation_id: str = ""  # a queued generation job of the project

    def path(self, pattern: str) -> str:
        if pattern.startswith("/api/v1/builds/"):
            value = str(self.build.id)
        elif pattern.startswith("/api/v1/deployments/"):
            value = str(self.deployment.id)
        elif pattern.startswith("/api/v1/tokens/"):
            value = self.spare_token_id
        elif pattern.startswith("/api/v1/runs/"):
            value = str(self.run.id)
        elif pattern.startswith("/api/v1/schedules/"):
            value = self.schedule_id
        elif pattern.startswith("/api/v1/templates/"):
            value = self.template_id
        elif pattern.startswith("/api/v1/generations/"):
            value = self.generation_id
        else:
            value = str(self.project.id)
        return (
            pattern.replace("{id}", value)
            .replace("{key}", "API_TOKEN")
            .replace("{project}", str(self.project.id))
        )

    def body(self, route: Route) -> dict[str, object] | None:
        """A valid body, so the answer is about authorisation and not about the input."""
        match (route.method, route.pattern):
            case ("POST", "/api/v1/projects"):
                return {"name": f"auth-{uuid.uuid4().hex[:8]}", "repo_url": "https://x.invalid/r"}
            case ("PATCH", "/api/v1/schedules/{id}"):
                return {"enabled": False}
            case ("PATCH", _):
                return {"branch": "main"}
            case ("POST", "/api/v1/projects/{id}/builds"):
                return {"deploy": False}
            case ("POST", "/api/v1/projects/{id}/deployments"):
                return {"build_id": str(self.build.id)}
            case ("PUT", "/api/v1/projects/{id}/env/{key}"):
                return {"value": "a value", "targets": ["build"]}
            case ("POST", "/api/v1/projects/{id}/schedules"):
                return {"name": "nightly", "cron": "0 3 * * *", "action": {"type": "build"}}
            case ("POST", "/api/v1/projects/{id}/runs"):
                return {"command": "echo hello"}
            case ("POST", "/api/v1/tokens"):
                return {"name": "made", "scopes": ["read"], "project_id": str(self.project.id)}
            case ("POST", "/api/v1/templates"):
                return {
                    "name": f"auth-{uuid.uuid4().hex[:8]}",
                    "steps": [{"name": "a", "prompt": "A"}],
                }
            case ("PUT", "/api/v1/templates/{id}"):
                return {"steps": [{"name": "a", "prompt": "B"}]}
            case ("POST", "/api/v1/projects/{id}/generations") | (
                "POST",
                "/api/v1/projects/{id}/generations/dry-run",
            ):
                return {
                    "template": self.template_id,
                    "model": {"provider": "ollama", "name": "llama3"},
                    "variables": {"city": ["Lyon"]},
                }
            case ("POST", _):
                return {}
        return None

    def bearer(self, caller: str) -> str:
        own = str(self.project.id)
        match caller:
            case "no token":
                return ""
            case "expired":
                return token(["admin"], expires_in_s=-60)
            case "revoked":
                return token(["admin"], revoked=True)
            case "other project":
                return token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))
            case "admin":
                return token(["admin"])
            case scope:
                return token([scope], project_id=own)


@pytest.fixture
async def subject(pool: asyncpg.Pool) -> Subject:
    project = await new_project(pool)
    build = await new_build(pool, project)
    deployment = await succeed(pool, build)
    _, spare = mint(SECRET, subject="spare", scopes=["read"], project_id=str(project.id))
    async with pool.acquire() as conn:
        await register(conn, spare, name="spare", created_by="tests")
        run = await request_run(conn, project, command="echo hi", timeout_s=60, schedule_id=None)
        schedule = await create_schedule(
            conn,
            project,
            ScheduleCreate(name="hourly", cron="0 * * * *", action=BuildAction()),
            now=datetime.now(UTC),
        )
        template = await create_template(
            conn,
            TemplateCreate(
                name=f"auth-{uuid.uuid4().hex[:8]}",
                steps=[TemplateStep(name="greet", prompt="Hello")],
            ),
            created_by="tests",
        )
        generation = await create_generation(
            conn,
            project,
            GenerationCreate(
                template=str(template.id),
                model=GenerationModel(provider="ollama", name="llama3"),
                variables={"city": ["Lyon", "Nantes"]},
            ),
            created_by="tests",
            settings=GenerationSettings(),
        )
    return Subject(
        project,
        build,
        deployment,
        spare.jti,
        run,
        str(schedule.id),
        str(template.id),
        str(generation.id),
    )


def test_the_table_lists_every_route(api: Api) -> None:
    """A route missing here (or gone from the app) fails: its access rules must be stated."""
    app_routes = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        # The dashboard's pages are no API routes: test_dashboard*.py covers their sessions.
        if r.resource is not None and r.method != "HEAD" and not is_dashboard_route(r)
    }
    listed = [(r.method, r.pattern) for r in ROUTES]
    assert len(listed) == len(set(listed)), "one row per route"
    assert app_routes - PUBLIC == set(listed)


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
    if reply.status >= 400:
        assert reply.content_type.startswith("application/problem+json"), reply.body
    return reply.status


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
async def test_access(api: Api, subject: Subject, route: Route, caller: str) -> None:
    api.token = None
    status = await status_of(api, route, subject, subject.bearer(caller))
    assert status == expected(route, caller), f"{route.method} {route.pattern} as {caller}"


async def test_a_channel_of_another_project_is_no_such_resource(
    api: Api, pool: asyncpg.Pool
) -> None:
    """On /api/v1/ws, a token of project A subscribing to B's build log or B's events gets the
    very error a channel that does not exist gets (the id it sent aside): nothing of B."""
    a = await new_project(pool)
    b = await new_project(pool)
    b_build = await new_build(pool, b)
    await succeed(pool, b_build)
    bearer = token(["read", "deploy", "write"], project_id=str(a.id))
    ws = await api.client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {bearer}"})

    async def error_for(channel: str) -> dict[str, object]:
        await ws.send_str(json.dumps({"type": "subscribe", "channel": channel}))
        frame = await receive_frame(ws)
        assert frame["type"] == "error", frame
        return frame

    missing = str(uuid.uuid4())
    pairs = [
        (f"build:{b_build.id}:logs", f"build:{missing}:logs", str(b_build.id)),
        (f"project:{b.id}:events", f"project:{missing}:events", str(b.id)),
        (f"project:{b.name}:events", "project:no-such-project:events", b.name),
    ]
    for of_b, nowhere, b_ref in pairs:
        got, absent = await error_for(of_b), await error_for(nowhere)
        ref = nowhere.split(":")[1]
        assert json.dumps(got).replace(b_ref, ref) == json.dumps(absent), (got, absent)
        assert "line" not in got
        assert "event" not in got
    # A's own channel is fine on the same socket.
    own = f"project:{a.id}:events"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": own}))
    assert await receive_frame(ws) == {"type": "subscribed", "channel": own}
    await ws.close()


def test_the_api_description_states_the_same_scopes() -> None:
    """What /api/v1/openapi.json tells callers about scopes is what this matrix enforces."""
    documented = {(d.method, d.path): d.scope for d in DOCUMENTED_ROUTES}
    for route in ROUTES:
        scope = documented[(route.method, route.pattern)]
        if route.pattern.startswith("/api/v1/hooks/"):
            assert scope == "signature", route
        elif scope == "token":  # any valid token; what it sees is filtered per project
            assert route.needs == "read", route
            assert route.other != 404, route
        else:
            assert scope == route.needs, route
