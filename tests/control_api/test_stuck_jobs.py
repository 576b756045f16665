"""The safety net of the max-deliveries watcher: builds and deployments whose status has not
changed for longer than their deadline (no worker took them, or their worker died and the
advisory was lost) are failed with a readable reason through the ordinary event path, and a
build's live log viewers get their end; jobs within their deadline are left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.app import create_app
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.consumers.stuck_jobs import LOCK_KEY, sweep_stuck_jobs
from launchdeck.control_api.domain.abandoned_jobs import Deadlines
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store.records import Build, Deployment
from tests.control_api.helpers import (
    activate,
    apply,
    build_event,
    deployment_event,
    get_build,
    get_deployment,
    new_build,
    new_project,
    succeed,
)
from tests.control_api.log_support import AUTH, view_until_closed
from tests.control_api.support import Api, ApiClient, make_settings
from tests.polling import eventually

DEADLINES = Deadlines(build_s=5400, deployment_s=3600)  # 1 h time limit + 30 min; 1 h


def now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def running(*coroutines: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def events_applied(pool: asyncpg.Pool, js: JetStreamContext) -> AsyncIterator[None]:
    """The events consumer, so the sweep's events reach Postgres."""
    async with running(EventsConsumer(pool, js).run()):
        yield


async def silent_since(pool: asyncpg.Pool, job: Build | Deployment, ago: timedelta) -> None:
    """As if the job's last status change (and, for a build, its creation) was `ago`."""
    at = now() - ago
    if isinstance(job, Build):
        await pool.execute(
            "UPDATE builds SET created_at = $2, updated_at = $2 WHERE id = $1", job.id, at
        )
    else:
        await pool.execute(
            "UPDATE deployments SET created_at = $2, updated_at = $2 WHERE id = $1", job.id, at
        )


async def status_of(pool: asyncpg.Pool, build: Build) -> str:
    return (await get_build(pool, build.id)).status


async def drain(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """Settle what earlier tests of the module left silent, so counts here are this test's."""
    while await sweep_stuck_jobs(pool, js, DEADLINES):
        pass


async def test_a_queued_build_no_worker_took_is_failed_and_its_viewers_get_the_end(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext, events_applied: None
) -> None:
    """Queued three hours ago, never started (no worker): failed with the reason; a viewer of
    its log receives the end; a build queued just now is left queued."""
    await drain(pool, js)
    project = await new_project(pool)
    forgotten = await new_build(pool, project, deploy=False)
    await silent_since(pool, forgotten, timedelta(hours=3))
    just_queued = await new_build(pool, project, deploy=False)
    viewer = await api.client.ws_connect(f"/api/v1/builds/{forgotten.id}/logs/ws", headers=AUTH)

    metrics = Metrics()
    assert await sweep_stuck_jobs(pool, js, DEADLINES, metrics) == 1

    viewed = await view_until_closed(viewer)
    assert viewed.ends == [{"type": "end", "build_id": str(forgotten.id), "status": "failed"}]
    await eventually("the failure applied", lambda: _is(pool, forgotten, "failed"))
    failed = await get_build(pool, forgotten.id)
    assert failed.error == "no build-worker started the build: it was queued for 3h 00m"
    assert failed.finished_at is not None
    assert await status_of(pool, just_queued) == "queued"
    assert metrics.stuck_jobs == {"build": 1}
    assert await sweep_stuck_jobs(pool, js, DEADLINES) == 0


async def _is(pool: asyncpg.Pool, build: Build, status: str) -> bool:
    return await status_of(pool, build) == status


async def test_a_build_whose_worker_went_silent_is_failed_where_it_stopped(
    pool: asyncpg.Pool, js: JetStreamContext, events_applied: None
) -> None:
    """Building (attempt 2) and silent for two hours: failed, saying so, its step kept; a build
    silent for less than its deadline goes on."""
    await drain(pool, js)
    project = await new_project(pool)
    dead = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(dead, "building", step="build", attempt=2, at=now()))
    await silent_since(pool, dead, timedelta(hours=2))
    slow = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(slow, "building", step="build", at=now()))
    await silent_since(pool, slow, timedelta(minutes=80))

    assert await sweep_stuck_jobs(pool, js, DEADLINES) == 1
    await eventually("the failure applied", lambda: _is(pool, dead, "failed"))
    failed = await get_build(pool, dead.id)
    assert failed.error == (
        "the build-worker stopped reporting: no progress for 2h 00m while building "
        "(attempt 2), no result was reported"
    )
    assert (failed.step, failed.attempt) == ("build", 2)
    assert await status_of(pool, slow) == "building"


async def test_deployments_pending_or_activating_past_their_deadline_are_failed(
    pool: asyncpg.Pool, js: JetStreamContext, events_applied: None
) -> None:
    """A pending and an activating deployment silent for two hours fail with their reasons; an
    active one as old, and a pending one of a minute ago, stay as they are."""
    await drain(pool, js)
    pending = await succeed(pool, await new_build(pool, await new_project(pool)))
    activating = await succeed(pool, await new_build(pool, await new_project(pool)))
    await apply(pool, deployment_event(activating, "activating", at=now()))
    live = await activate(
        pool, await succeed(pool, await new_build(pool, await new_project(pool))), now()
    )
    recent = await succeed(pool, await new_build(pool, await new_project(pool)))
    for deployment in (pending, activating, live):
        await silent_since(pool, deployment, timedelta(hours=2))
    await silent_since(pool, recent, timedelta(minutes=1))

    assert await sweep_stuck_jobs(pool, js, DEADLINES) == 2

    async def both_failed() -> bool:
        statuses = {(await get_deployment(pool, d.id)).status for d in (pending, activating)}
        return statuses == {"failed"}

    await eventually("the failures applied", both_failed)
    assert (await get_deployment(pool, pending.id)).error == (
        "no deploy-engine started the deployment: it was pending for 2h 00m"
    )
    assert (await get_deployment(pool, activating.id)).error == (
        "the deploy-engine stopped reporting: activating for 2h 00m, no result was reported"
    )
    assert (await get_deployment(pool, live.id)).status == "active"
    assert (await get_deployment(pool, recent.id)).status == "pending"


async def test_one_replica_sweeps_at_a_time(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """While another replica holds the sweep's lock, a sweep does nothing."""
    await drain(pool, js)
    build = await new_build(pool, await new_project(pool), deploy=False)
    await silent_since(pool, build, timedelta(hours=3))
    async with pool.acquire() as other_replica:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        try:
            assert await sweep_stuck_jobs(pool, js, DEADLINES) == 0
        finally:
            await other_replica.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    assert await sweep_stuck_jobs(pool, js, DEADLINES) == 1


async def test_the_app_fails_jobs_nobody_takes_by_itself(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> None:
    """The application — with a longest time limit of 0.2 s and a grace of 0.3 s, a deploy
    deadline of 0.5 s — fails on its own a queued build and a pending deployment that no worker
    takes within that, each with its reason."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    deployment = await succeed(pool, await new_build(pool, await new_project(pool)))
    # The jobs of this module were never meant to reach a worker: keep them off the queues.
    await pool.execute("DELETE FROM outbox")
    settings = make_settings(
        database_url,
        nats_url,
        LAUNCHDECK_BUILD_MAX_TIMEOUT_S="0.2",
        LAUNCHDECK_STUCK_BUILD_GRACE_S="0.3",
        LAUNCHDECK_DEPLOY_DEADLINE_S="0.5",
        LAUNCHDECK_STUCK_SWEEP_INTERVAL_S="0.1",
    )
    client: TestClient[Any, Any] = ApiClient(TestServer(create_app(settings, pool, nc, js)))
    await client.start_server()
    try:

        async def both_failed() -> bool:
            failed_deployment = (await get_deployment(pool, deployment.id)).status == "failed"
            return failed_deployment and await _is(pool, build, "failed")

        await eventually("the silent build and deployment failed", both_failed)
    finally:
        await client.close()
    error = (await get_build(pool, build.id)).error or ""
    assert error.startswith("no build-worker started the build: it was queued for "), error
    error = (await get_deployment(pool, deployment.id)).error or ""
    assert error.startswith("no deploy-engine started the deployment: it was pending for "), error
