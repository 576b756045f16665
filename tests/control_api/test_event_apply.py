"""Applying build and deployment events to Postgres (no NATS): status, timings, auto-deploy,
the inbox, activation and rollback."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import (
    BuildStatusChanged,
    DeploymentStatusChanged,
    DeployRequested,
)
from launchdeck.contracts.subjects import STREAM_EVENTS, SUBJECT_DEPLOY_JOBS
from launchdeck.control_api.domain import deployments as deployments_service
from launchdeck.control_api.domain.errors import Conflict
from launchdeck.control_api.domain.events import EventOrigin, apply_event
from tests.control_api.helpers import (
    T0,
    activate,
    apply,
    artifact,
    build_event,
    deployment_event,
    get_build,
    get_deployment,
    new_build,
    new_project,
    next_seq,
    succeed,
)


async def test_progress_updates_status_step_and_timings(pool: asyncpg.Pool) -> None:
    """Steps update status and step; started_at is the first non-queued event, finished_at the
    terminal one; commit and artifact are recorded."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    t1, t2, t3 = T0, T0 + timedelta(seconds=3), T0 + timedelta(seconds=9)
    await apply(pool, build_event(build, "cloning", step="clone", at=t1))
    await apply(
        pool,
        build_event(
            build, "building", step="build", commit_sha="c" * 40, commit_message="m", at=t2
        ),
    )
    current = await get_build(pool, build.id)
    assert (current.status, current.step, current.commit_sha) == ("building", "build", "c" * 40)
    assert current.started_at == t1
    assert current.finished_at is None

    outcome = await apply(pool, build_event(build, "succeeded", artifact=artifact(build), at=t3))
    assert outcome.finished_build_id == build.id
    assert outcome.started_deployment_id is None  # deploy=false
    done = await get_build(pool, build.id)
    assert done.status == "succeeded"
    assert done.started_at == t1
    assert done.finished_at == t3
    assert done.commit_sha == "c" * 40
    assert done.artifact == artifact(build)
    assert done.deployment_id is None


async def test_success_starts_deployment_with_its_command(pool: asyncpg.Pool) -> None:
    """A succeeded build with deploy=true gets a pending deployment in its environment and a
    DeployRequested (artifact, project name, domains) in the outbox, in the same transaction."""
    project = await new_project(pool, domains=["www.example.com"])
    build = await new_build(pool, project, ref="feature")  # a preview
    deployment = await succeed(pool, build)
    assert deployment.status == "pending"
    assert deployment.environment == "preview"
    assert deployment.build_id == build.id
    assert deployment.trigger == "build"
    assert (await get_build(pool, build.id)).deployment_id == deployment.id
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", deployment.id
        )
    assert row["subject"] == SUBJECT_DEPLOY_JOBS
    command = decode(bytes(row["payload"]), DeployRequested)
    assert command.deployment_id == str(deployment.id)
    assert command.build_id == str(build.id)
    assert command.project_name == project.name
    assert command.environment == "preview"
    assert command.artifact == artifact(build)
    assert command.domains == ["www.example.com"]


async def test_failure_records_the_error(pool: asyncpg.Pool) -> None:
    """A failed build keeps its reason and the step it failed in, and starts no deployment."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "cloning", step="clone"))
    outcome = await apply(pool, build_event(build, "failed", error="repository not found: x"))
    assert outcome.finished_build_id == build.id
    assert outcome.started_deployment_id is None
    failed = await get_build(pool, build.id)
    assert failed.status == "failed"
    assert failed.error == "repository not found: x"
    assert failed.step == "clone"  # where it failed
    assert failed.finished_at is not None


async def test_terminal_and_stale_events_are_ignored(pool: asyncpg.Pool) -> None:
    """No step backwards within an attempt, a newer attempt restarts, a finished build stays so."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(build, "building"))
    late = await apply(pool, build_event(build, "cloning"))
    assert late.result == "ignored"
    assert (await get_build(pool, build.id)).status == "building"

    retry = await apply(pool, build_event(build, "cloning", attempt=2))
    assert retry.applied
    assert ((b := await get_build(pool, build.id)).status, b.attempt) == ("cloning", 2)
    assert (await apply(pool, build_event(build, "packaging", attempt=1))).result == "ignored"

    await apply(pool, build_event(build, "failed", attempt=2, error="boom"))
    for status in ("building", "succeeded"):
        assert (await apply(pool, build_event(build, status, attempt=3))).result == "ignored"
    final = await get_build(pool, build.id)
    assert (final.status, final.error, final.attempt) == ("failed", "boom", 2)


async def test_the_inbox_knows_events_by_message_id_not_by_sequence(pool: asyncpg.Pool) -> None:
    """An event's message id identifies it wherever it sits in the stream; without one, its
    sequence and the time the stream stored it do — a recreated stream's message with an old
    sequence number is a new event."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    seq = next_seq()
    cloning = build_event(build, "cloning", step="clone")
    building = build_event(build, "building", step="build")
    packaging = build_event(build, "packaging", step="package")

    async def result(event: BuildStatusChanged, origin: EventOrigin) -> str:
        return (await apply_event(pool, origin, event)).result

    by_id = EventOrigin(STREAM_EVENTS, seq, msg_id=f"{build.id}:1:cloning", stored_at=T0)
    assert await result(cloning, by_id) == "applied"
    # The same message id at another position (redelivered from a recreated stream): a duplicate.
    moved = EventOrigin(STREAM_EVENTS, 1, msg_id=f"{build.id}:1:cloning", stored_at=T0)
    assert await result(cloning, moved) == "duplicate"
    # Another message at the same position of a new stream, without an id: applied.
    unnamed = EventOrigin(STREAM_EVENTS, seq, stored_at=T0 + timedelta(days=1))
    assert await result(building, unnamed) == "applied"
    assert await result(building, unnamed) == "duplicate"  # its redelivery
    later = EventOrigin(STREAM_EVENTS, seq, stored_at=T0 + timedelta(days=2))
    assert await result(packaging, later) == "applied"
    assert (await get_build(pool, build.id)).status == "packaging"


async def test_redelivered_event_is_applied_once(pool: asyncpg.Pool) -> None:
    """The same stream sequence applied twice changes nothing the second time."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    seq = next_seq()
    event = build_event(build, "succeeded", artifact=artifact(build))
    first = await apply(pool, event, seq)
    second = await apply(pool, event, seq)
    assert first.applied
    assert second.result == "duplicate"
    assert second.started_deployment_id is None
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM deployments WHERE build_id = $1", build.id
        )
    assert count == 1


async def test_unknown_build_or_deployment_is_ignored(pool: asyncpg.Pool) -> None:
    """An event for a build or deployment this database does not know is skipped."""
    event = BuildStatusChanged(
        build_id=str(uuid.uuid4()), project_id=str(uuid.uuid4()), status="cloning", at=T0
    )
    assert (await apply(pool, event)).result == "ignored"
    dep_event = DeploymentStatusChanged(
        deployment_id="not-a-uuid",
        project_id=str(uuid.uuid4()),
        build_id=str(uuid.uuid4()),
        environment="production",
        status="active",
        at=T0,
    )
    assert (await apply(pool, dep_event)).result == "ignored"


async def test_activation_supersedes_the_previous_deployment(pool: asyncpg.Pool) -> None:
    """A newly active deployment supersedes the active one of its environment and records it."""
    project = await new_project(pool)
    first = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    assert first.status == "active"
    assert first.activated_at == T0
    assert first.url == f"http://p.localhost/{first.id}"
    assert first.previous_deployment_id is None

    build2 = await new_build(pool, project)
    second = await activate(pool, await succeed(pool, build2), T0 + timedelta(minutes=1))
    assert second.status == "active"
    assert second.previous_deployment_id == first.id
    assert (await get_deployment(pool, first.id)).status == "superseded"
    assert (await get_build(pool, build2.id)).deployment_id == second.id

    # A late `activating` for the active deployment does not move it back.
    assert (await apply(pool, deployment_event(second, "activating"))).result == "ignored"
    # A preview activation leaves production alone.
    preview = await activate(
        pool, await succeed(pool, await new_build(pool, project, ref="topic")), T0
    )
    assert preview.previous_deployment_id is None
    assert (await get_deployment(pool, second.id)).status == "active"


async def test_failed_deployment_leaves_the_previous_active(pool: asyncpg.Pool) -> None:
    """A deployment that fails records its reason; the active one stays active."""
    project = await new_project(pool)
    first = await activate(pool, await succeed(pool, await new_build(pool, project)), T0)
    doomed = await succeed(pool, await new_build(pool, project))
    await apply(pool, deployment_event(doomed, "failed", error="artifact checksum mismatch"))
    failed = await get_deployment(pool, doomed.id)
    assert (failed.status, failed.error) == ("failed", "artifact checksum mismatch")
    assert (await get_deployment(pool, first.id)).status == "active"
    assert (await apply(pool, deployment_event(doomed, "active"))).result == "ignored"


async def test_rollback_walks_back_through_successful_deployments(pool: asyncpg.Pool) -> None:
    """Rollback re-deploys the previous successful production build; the deployment it replaces
    becomes rolled_back; a second rollback goes one further back; with none left it is refused."""
    project = await new_project(pool)
    async with pool.acquire() as conn:
        with pytest.raises(Conflict):
            await deployments_service.rollback(conn, project)
    built = [await new_build(pool, project) for _ in range(3)]
    deps = []
    for i, build in enumerate(built):
        deps.append(await activate(pool, await succeed(pool, build), T0 + timedelta(minutes=i)))

    async with pool.acquire() as conn:
        back = await deployments_service.rollback(conn, project)
    assert (back.build_id, back.trigger, back.status) == (built[1].id, "rollback", "pending")
    back = await activate(pool, back, T0 + timedelta(minutes=10))
    assert (await get_deployment(pool, deps[2].id)).status == "rolled_back"
    assert back.previous_deployment_id == deps[2].id
    assert (await get_build(pool, built[1].id)).deployment_id == back.id

    async with pool.acquire() as conn:
        further = await deployments_service.rollback(conn, project)
    assert further.build_id == built[0].id
    further = await activate(pool, further, T0 + timedelta(minutes=11))
    assert (await get_deployment(pool, back.id)).status == "rolled_back"

    async with pool.acquire() as conn:
        with pytest.raises(Conflict):
            await deployments_service.rollback(conn, project)


async def test_deploying_an_older_build_counts_as_rollback(pool: asyncpg.Pool) -> None:
    """Activating an older build by hand marks the replaced deployment rolled_back."""
    project = await new_project(pool)
    b1, b2 = await new_build(pool, project), await new_build(pool, project)
    await activate(pool, await succeed(pool, b1), T0)
    d2 = await activate(pool, await succeed(pool, b2), T0 + timedelta(minutes=1))
    async with pool.acquire() as conn:
        manual = await deployments_service.deploy_build(conn, project, b1.id, "production")
    assert manual.trigger == "api"
    await activate(pool, manual, T0 + timedelta(minutes=2))
    assert (await get_deployment(pool, d2.id)).status == "rolled_back"


async def test_rollback_skips_a_build_that_was_rolled_back(pool: asyncpg.Pool) -> None:
    """After b2 was rolled back to b1 and b3 went live, a rollback returns to b1, not to b2."""
    project = await new_project(pool)
    b1, b2 = await new_build(pool, project), await new_build(pool, project)
    await activate(pool, await succeed(pool, b1), T0)
    await activate(pool, await succeed(pool, b2), T0 + timedelta(minutes=1))
    async with pool.acquire() as conn:
        back = await deployments_service.rollback(conn, project)
    await activate(pool, back, T0 + timedelta(minutes=2))
    b3 = await new_build(pool, project)
    await activate(pool, await succeed(pool, b3), T0 + timedelta(minutes=3))
    async with pool.acquire() as conn:
        again = await deployments_service.rollback(conn, project)
    assert again.build_id == b1.id


async def test_an_older_build_finishing_last_does_not_take_production_back(
    pool: asyncpg.Pool,
) -> None:
    """Builds finishing out of order (several workers): when build 1 succeeds after build 2 is
    live or deploying, its deployment is recorded superseded, with the reason, and nothing is
    sent to the deploy-engine; previews are per build and always deploy."""
    project = await new_project(pool)
    b1, b2 = await new_build(pool, project), await new_build(pool, project)
    live = await activate(pool, await succeed(pool, b2), T0)
    late = await succeed(pool, b1)
    reason = "not deployed: build #2, which is newer, is already live or deploying"
    assert (late.status, late.error, late.activated_at) == ("superseded", reason, None)
    assert (await get_build(pool, b1.id)).deployment_id == late.id
    assert (await get_deployment(pool, live.id)).status == "active"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT subject, payload FROM outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
            f"%{late.id}%",
        )
    assert [row["subject"] for row in rows] == [
        f"ld.events.deployment.{project.id}.{late.id}"
    ]  # an event for viewers, no DeployRequested
    event = decode(bytes(rows[0]["payload"]), DeploymentStatusChanged)
    assert (event.status, event.error, event.build_id) == ("superseded", reason, str(b1.id))
    # Its own event coming back through the stream changes nothing.
    assert (await apply(pool, event)).result == "ignored"
    # A rollback never lands on a build that was never live.
    async with pool.acquire() as conn:
        with pytest.raises(Conflict):
            await deployments_service.rollback(conn, project)

    # Still deploying counts too: b4 pending, then b3 finishes.
    b3, b4 = await new_build(pool, project), await new_build(pool, project)
    pending = await succeed(pool, b4)
    assert pending.status == "pending"
    assert (await succeed(pool, b3)).status == "superseded"

    # A preview of an older build deploys as usual.
    p1 = await new_build(pool, project, ref="topic")
    p2 = await new_build(pool, project, ref="topic")
    await activate(pool, await succeed(pool, p2), T0)
    assert (await succeed(pool, p1)).status == "pending"
