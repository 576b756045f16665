"""`unhealthy` in the control-api: the deploy-engine's event for the live deployment is applied
(active ↔ unhealthy, both ways) and the deployment stays the live one for everything that asks —
superseding, rollback, redeploy, builds finishing out of order, the artifacts kept, the unique
index of live deployments; the API, the project's events channel and /metrics show it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.subjects import deployment_event_subject
from launchdeck.control_api.domain import deployments as deployments_service
from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.store.records import Deployment, Project
from tests.control_api.helpers import (
    T0,
    activate,
    apply,
    deployment_event,
    get_build,
    get_deployment,
    new_build,
    new_project,
    succeed,
)
from tests.control_api.log_support import ADMIN, receive_frame
from tests.control_api.support import Api

CRASHING = "the app crashed 5 times within 60s; last output: Error: ECONNREFUSED"


async def live_deployment(pool: asyncpg.Pool, project: Project) -> Deployment | None:
    async with pool.acquire() as conn:
        return await deployments.active(conn, project.id, "production")


async def unhealthy(pool: asyncpg.Pool, deployment: Deployment) -> Deployment:
    """The deploy-engine's `unhealthy` event for `deployment`, applied."""
    event = deployment_event(deployment, "unhealthy", error=CRASHING, at=T0 + timedelta(hours=1))
    assert (await apply(pool, event)).applied
    return await get_deployment(pool, deployment.id)


async def test_unhealthy_and_back_is_the_same_live_deployment(api: Api, pool: asyncpg.Pool) -> None:
    """active → unhealthy (with the engine's reason) → active (the reason cleared): nothing else
    moves — same activation time, still the build's deployment and the live one."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    live = await activate(pool, await succeed(pool, build), T0)

    sick = await unhealthy(pool, live)
    assert (sick.status, sick.error, sick.activated_at) == ("unhealthy", CRASHING, T0)
    assert await live_deployment(pool, project) == sick
    assert (await get_build(pool, build.id)).deployment_id == live.id
    shown = (await api.call("GET", f"/api/v1/deployments/{live.id}")).body
    assert (shown["status"], shown["error"]) == ("unhealthy", CRASHING)
    history = (await api.call("GET", f"/api/v1/projects/{project.id}/deployments")).body
    assert [d["status"] for d in history["items"]] == ["unhealthy"]
    # A late `activating` does not move it back; a repeated `unhealthy` changes nothing new.
    assert (await apply(pool, deployment_event(live, "activating"))).result == "ignored"

    back = deployment_event(live, "active", at=T0 + timedelta(hours=2))
    assert (await apply(pool, back)).applied
    healed = await get_deployment(pool, live.id)
    assert (healed.status, healed.error, healed.activated_at) == ("active", None, T0)
    assert healed.previous_deployment_id is None
    assert await live_deployment(pool, project) == healed


async def test_a_new_deployment_supersedes_an_unhealthy_one(pool: asyncpg.Pool) -> None:
    """The next build going live retires the unhealthy deployment (superseded): one live."""
    project = await new_project(pool)
    first = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    await unhealthy(pool, first)
    second = await activate(
        pool, await succeed(pool, await new_build(pool, project)), T0 + timedelta(hours=3)
    )
    assert second.previous_deployment_id == first.id
    assert (await get_deployment(pool, first.id)).status == "superseded"
    assert await live_deployment(pool, project) == second


async def test_an_unhealthy_event_for_an_activating_deployment_makes_it_live(
    pool: asyncpg.Pool,
) -> None:
    """The engine may say `unhealthy` before its `active` arrives: the deployment is live (the
    previous one retired, its activation time recorded) and comes back `active` later."""
    project = await new_project(pool)
    old = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    new = await succeed(pool, await new_build(pool, project))
    await apply(pool, deployment_event(new, "activating"))
    sick = await unhealthy(pool, new)
    assert sick.status == "unhealthy"
    assert sick.activated_at == T0 + timedelta(hours=1)
    assert sick.previous_deployment_id == old.id
    assert (await get_deployment(pool, old.id)).status == "superseded"
    assert (await apply(pool, deployment_event(new, "active"))).applied
    assert (await get_deployment(pool, new.id)).status == "active"


async def test_rollback_from_an_unhealthy_deployment(api: Api, pool: asyncpg.Pool) -> None:
    """Build 2 live but unhealthy: `POST …/rollback` deploys build 1 again, and once that is
    active the unhealthy deployment is rolled back."""
    project = await new_project(pool)
    b1, b2 = await new_build(pool, project), await new_build(pool, project)
    await activate(pool, await succeed(pool, b1), T0)
    d2 = await activate(pool, await succeed(pool, b2), T0 + timedelta(minutes=1))
    await unhealthy(pool, d2)

    reply = await api.call("POST", f"/api/v1/projects/{project.id}/rollback")
    assert reply.status == 202, reply.body
    assert (reply.body["build_id"], reply.body["trigger"]) == (str(b1.id), "rollback")
    back = await get_deployment(pool, uuid.UUID(reply.body["id"]))
    back = await activate(pool, back, T0 + timedelta(hours=4))
    assert back.previous_deployment_id == d2.id
    assert (await get_deployment(pool, d2.id)).status == "rolled_back"
    assert await live_deployment(pool, project) == back


async def test_the_live_build_of_an_unhealthy_deployment_is_redeployed(pool: asyncpg.Pool) -> None:
    """Re-activating the live build (a domain change, a redeploy) finds an unhealthy one."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    sick = await unhealthy(pool, await activate(pool, await succeed(pool, build), T0))
    async with pool.acquire() as conn, conn.transaction():
        again = await deployments_service.redeploy_active(conn, project)
    assert again is not None
    assert (again.build_id, again.status) == (sick.build_id, "pending")


async def test_an_older_build_does_not_take_production_from_an_unhealthy_newer_one(
    pool: asyncpg.Pool,
) -> None:
    """Builds finishing out of order: build 2 is live but unhealthy, build 1 finishes last — it
    is not deployed (superseded at once)."""
    project = await new_project(pool)
    b1, b2 = await new_build(pool, project), await new_build(pool, project)
    await unhealthy(pool, await activate(pool, await succeed(pool, b2), T0))
    late = await succeed(pool, b1)
    assert late.status == "superseded"
    assert (await live_deployment(pool, project)) is not None


async def test_an_unhealthy_deployments_artifact_is_kept(pool: asyncpg.Pool) -> None:
    """The artifact of a build whose deployment is unhealthy is still needed (restarts)."""
    project = await new_project(pool)
    build = await new_build(pool, project, environment="preview", ref="topic")
    await unhealthy(pool, await activate(pool, await succeed(pool, build), T0))
    async with pool.acquire() as conn:
        assert await builds.artifact_keepers(conn, [build.id], keep=0) == {build.id}


async def test_one_live_deployment_per_project_and_environment(pool: asyncpg.Pool) -> None:
    """PostgreSQL refuses a second live row (active or unhealthy) for the same environment."""
    project = await new_project(pool)
    first = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    await unhealthy(pool, first)
    other = await succeed(pool, await new_build(pool, project))
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError, match="deployments_one_live_idx"):
            await conn.execute("UPDATE deployments SET status = 'active' WHERE id = $1", other.id)


async def test_unhealthy_reaches_project_viewers_and_metrics(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The engine's `unhealthy` event, published on NATS, reaches the project's events channel
    as it is; `launchdeck_deployments{status="unhealthy"}` counts unhealthy deployments, and
    exists (0) before any."""
    page: str = (await api.call("GET", "/metrics", token="")).body
    assert 'launchdeck_deployments{status="unhealthy"} ' in page

    project = await new_project(pool)
    live = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    ws = await api.client.ws_connect(f"/api/v1/ws?token={ADMIN}")
    channel = f"project:{project.name}:events"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel}))
    assert await receive_frame(ws) == {"type": "subscribed", "channel": channel}
    event = deployment_event(live, "unhealthy", error=CRASHING, at=datetime.now(UTC))
    await js.publish(deployment_event_subject(str(project.id), str(live.id)), encode(event))
    frame = await receive_frame(ws)
    await ws.close()
    assert (frame["kind"], frame["event"]["status"]) == ("deployment", "unhealthy")
    assert frame["event"]["error"] == CRASHING

    await unhealthy(pool, live)
    page = (await api.call("GET", "/metrics", token="")).body
    count = next(
        float(line.split()[1])
        for line in page.splitlines()
        if line.startswith('launchdeck_deployments{status="unhealthy"} ')
    )
    assert count >= 1
