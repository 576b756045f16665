"""The scheduler fires schedules on a test clock: one build per tick, missed ticks made once,
disabled schedules never, each tick at most once even when two transactions race for it; a
command waits for its previous run; an HTTP action calls the live app through the edge with
the project's host."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nats.js import JetStreamContext

from launchdeck.contracts.api import (
    BuildAction,
    CommandAction,
    HttpAction,
    ScheduleAction,
    ScheduleCreate,
    ScheduleUpdate,
)
from launchdeck.control_api.consumers.scheduler import Scheduler
from launchdeck.control_api.domain import schedules
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store import runs
from launchdeck.control_api.store import schedules as store
from launchdeck.control_api.store.records import Project, Schedule, ScheduleTick
from tests.control_api.helpers import new_project
from tests.polling import eventually

T0 = datetime(2031, 5, 4, 10, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def scheduler(
    pool: asyncpg.Pool, js: JetStreamContext, clock: Clock
) -> AsyncIterator[Scheduler]:
    """A scheduler on the test clock, holding a lease key of this test's own."""
    edge = "http://127.0.0.1:9"  # nothing listens: tests with HTTP actions make their own
    sched = Scheduler(
        pool,
        js,
        Metrics(),
        edge_url=edge,
        base_domain="localhost",
        poll_interval_s=0.05,
        lease_ttl_s=5,
        now=clock,
        lease_key=f"test-{uuid.uuid4().hex[:12]}",
    )
    assert await sched.lease.check()
    yield sched
    await sched.close()
    await sched.lease.release()


async def new_schedule(
    pool: asyncpg.Pool,
    project: Project,
    action: ScheduleAction,
    *,
    cron: str = "* * * * *",
    enabled: bool = True,
    now: datetime = T0,
) -> Schedule:
    request = ScheduleCreate(name=uuid.uuid4().hex[:8], cron=cron, action=action, enabled=enabled)
    async with pool.acquire() as conn:
        return await schedules.create_schedule(conn, project, request, now=now)


async def ticks(pool: asyncpg.Pool, schedule: Schedule) -> list[ScheduleTick]:
    async with pool.acquire() as conn:
        return await store.ticks_of(conn, schedule.id)


async def builds_of(pool: asyncpg.Pool, project: Project) -> list[Any]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT id, trigger, ref FROM builds WHERE project_id = $1 ORDER BY number",
                project.id,
            )
        )


async def fire_for(scheduler: Scheduler, schedule: Schedule) -> list[schedules.Fired]:
    return [f for f in await scheduler.round() if f.schedule_id == schedule.id]


async def test_one_build_per_tick(pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock) -> None:
    """Each minute's tick makes one build (trigger `schedule`); a round at the same time again
    makes none."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, BuildAction(ref="main"))
    assert schedule.next_run_at == datetime(2031, 5, 4, 10, 1, tzinfo=UTC)
    assert await fire_for(scheduler, schedule) == []  # 10:00:30: not yet

    for minute in (1, 2, 3):
        clock.at = datetime(2031, 5, 4, 10, minute, 0, 200_000, tzinfo=UTC)
        [fired] = await fire_for(scheduler, schedule)
        assert fired.outcome == "queued"
        assert fired.missed == 0
        assert fired.build_id
        assert await fire_for(scheduler, schedule) == []

    made = await builds_of(pool, project)
    assert [b["trigger"] for b in made] == ["schedule"] * 3
    recorded = await ticks(pool, schedule)
    assert [t.tick_at.minute for t in recorded] == [1, 2, 3]
    assert [t.build_id for t in recorded] == [b["id"] for b in made]
    assert [t.build_status for t in recorded] == ["queued"] * 3
    assert scheduler.metrics is not None
    page = scheduler.metrics.render().decode()
    assert "launchdeck_scheduler_leader 1" in page.splitlines()
    assert scheduler.metrics.schedule_ticks["queued"] >= 3
    assert 'launchdeck_schedule_ticks_total{outcome="queued"}' in page


async def test_missed_ticks_are_made_once(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """Nobody scheduled for five minutes: one build, for the latest tick, saying 4 were missed;
    the next tick is the next minute."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, BuildAction())
    clock.at = datetime(2031, 5, 4, 10, 5, 40, tzinfo=UTC)
    [fired] = await fire_for(scheduler, schedule)
    assert fired.tick_at == datetime(2031, 5, 4, 10, 5, tzinfo=UTC)
    assert fired.missed == 4
    assert len(await builds_of(pool, project)) == 1
    [tick] = await ticks(pool, schedule)
    assert tick.missed_ticks == 4
    assert "4 earlier tick(s)" in (tick.detail or "")
    async with pool.acquire() as conn:
        now = await store.get(conn, schedule.id)
    assert now is not None
    assert now.next_run_at == datetime(2031, 5, 4, 10, 6, tzinfo=UTC)
    assert now.last_run_at == clock.at


async def test_disabled_schedules_do_not_fire(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """Disabled at creation or later: no tick, no build, however late it is."""
    project = await new_project(pool)
    off = await new_schedule(pool, project, BuildAction(), enabled=False)
    later_off = await new_schedule(pool, project, BuildAction())
    async with pool.acquire() as conn:
        await schedules.update_schedule(conn, later_off, ScheduleUpdate(enabled=False), now=T0)
    clock.at = T0 + timedelta(hours=2)
    fired = await scheduler.round()
    assert {f.schedule_id for f in fired} & {off.id, later_off.id} == set()
    assert await ticks(pool, off) == []
    assert await ticks(pool, later_off) == []
    assert await builds_of(pool, project) == []


async def test_a_follower_fires_nothing(
    pool: asyncpg.Pool, js: JetStreamContext, scheduler: Scheduler, clock: Clock
) -> None:
    """A second scheduler on the same lease key does not get the lease and does not fire."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, BuildAction())
    follower = Scheduler(
        pool,
        js,
        edge_url="http://127.0.0.1:9",
        base_domain="localhost",
        poll_interval_s=0.05,
        lease_ttl_s=5,
        now=clock,
        lease_key=scheduler.lease.key,
    )
    assert not await follower.lease.check()
    clock.at = T0 + timedelta(minutes=1)
    assert await follower.round() == []
    assert await ticks(pool, schedule) == []
    assert len(await fire_for(scheduler, schedule)) == 1


async def test_a_tick_fires_once_when_two_transactions_race(pool: asyncpg.Pool) -> None:
    """Two replicas that both think they lead fire the same tick: one build. A stale view that
    brings the tick back (next_run_at reset) finds it recorded and fires nothing."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, BuildAction())
    now = T0 + timedelta(minutes=1)

    async def fire() -> schedules.Fired | None:
        async with pool.acquire() as conn:
            return await schedules.fire(conn, schedule.id, now=now)

    results = await asyncio.gather(*(fire() for _ in range(4)))
    assert len([r for r in results if r is not None]) == 1
    [fired] = [r for r in results if r is not None]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE schedules SET next_run_at = $2 WHERE id = $1", schedule.id, fired.tick_at
        )
    assert await fire() is None
    assert len(await builds_of(pool, project)) == 1
    assert len(await ticks(pool, schedule)) == 1


async def test_a_command_waits_for_its_previous_run(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """A tick while the schedule's run is queued or running is skipped (saying why); once it
    finished the next tick runs again. With allow_overlap every tick runs."""
    project = await new_project(pool)
    single = await new_schedule(pool, project, CommandAction(command="python manage.py tick"))
    overlap = await new_schedule(
        pool, project, CommandAction(command="echo hi", timeout_s=5, allow_overlap=True)
    )
    outcomes: dict[uuid.UUID, list[str]] = {single.id: [], overlap.id: []}
    for minute in (1, 2):
        clock.at = T0 + timedelta(minutes=minute)
        for fired in await scheduler.round():
            if fired.schedule_id in outcomes:
                outcomes[fired.schedule_id].append(fired.outcome)
    assert outcomes == {single.id: ["queued", "skipped"], overlap.id: ["queued", "queued"]}
    first, skipped = await ticks(pool, single)
    assert first.run_id is not None
    assert first.run_status == "queued"
    assert skipped.run_id is None
    assert "still queued or running" in (skipped.detail or "")
    async with pool.acquire() as conn:
        run = await runs.get(conn, first.run_id)
        assert run is not None
        assert run.command == "python manage.py tick"
        assert run.schedule_id == single.id
        assert run.timeout_s == 600
        await runs.apply_status(
            conn,
            first.run_id,
            status="succeeded",
            attempt=1,
            exit_code=0,
            error=None,
            deployment_id=None,
            build_id=None,
            started_at=clock.at,
            finished_at=clock.at,
        )
    clock.at = T0 + timedelta(minutes=3)
    [fired] = await fire_for(scheduler, single)
    assert fired.outcome == "queued"
    assert fired.run_id is not None
    assert (await ticks(pool, single))[0].run_status == "succeeded"


@pytest.fixture
async def edge() -> AsyncIterator[tuple[str, list[tuple[str, str, str]]]]:
    """A stand-in for the edge: records (method, Host, path) and answers by path."""
    seen: list[tuple[str, str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers["Host"], request.path))
        if request.path == "/slow":
            await asyncio.sleep(5)
        return web.Response(status=500 if request.path == "/broken" else 204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")), seen
    finally:
        await server.close()


async def test_http_actions_call_the_live_app_through_the_edge(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    clock: Clock,
    edge: tuple[str, list[tuple[str, str, str]]],
) -> None:
    """The call goes to the edge with the project's production host; 2xx succeeds, 500 and no
    answer within the timeout fail; the tick is `running` until the answer is recorded."""
    url, seen = edge
    sched = Scheduler(
        pool,
        js,
        Metrics(),
        edge_url=url,
        base_domain="apps.test",
        poll_interval_s=0.05,
        lease_ttl_s=5,
        now=clock,
        lease_key=f"test-{uuid.uuid4().hex[:12]}",
    )
    assert await sched.lease.check()
    project = await new_project(pool)
    ok = await new_schedule(pool, project, HttpAction(path="/cron/daily?x=1"))
    broken = await new_schedule(pool, project, HttpAction(path="/broken", method="GET"))
    slow = await new_schedule(pool, project, HttpAction(path="/slow", timeout_s=1))
    clock.at = T0 + timedelta(minutes=1)
    try:
        fired = await sched.round()
        assert {f.schedule_id: f.outcome for f in fired if f.schedule_id in (ok.id, broken.id)} == {
            ok.id: "running",
            broken.id: "running",
        }

        async def settled() -> dict[str, str]:
            found = {}
            for name, schedule in (("ok", ok), ("broken", broken), ("slow", slow)):
                [tick] = await ticks(pool, schedule)
                if tick.outcome == "running":
                    return {}
                found[name] = f"{tick.outcome}: {tick.detail}"
            return found

        outcomes = await eventually("the HTTP ticks to settle", settled, timeout_s=10)
        assert outcomes == {
            "ok": "succeeded: POST /cron/daily?x=1 answered 204",
            "broken": "failed: GET /broken answered 500",
            "slow": "failed: POST /slow: no answer within 1s",
        }
        host = f"{project.name}.apps.test"
        assert ("POST", host, "/cron/daily") in seen
        assert ("GET", host, "/broken") in seen
    finally:
        await sched.close()
        await sched.lease.release()


async def test_an_http_tick_cut_off_by_a_dead_scheduler_fails(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """A tick left `running` (its scheduler died mid-call) is failed after its deadline."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, HttpAction(path="/x", timeout_s=2))
    async with pool.acquire() as conn:
        fired = await schedules.fire(conn, schedule.id, now=T0 + timedelta(minutes=1))
    assert fired is not None
    assert fired.outcome == "running"
    clock.at = T0 + timedelta(minutes=1, seconds=30)
    await scheduler.round()
    assert (await ticks(pool, schedule))[0].outcome == "running"
    clock.at = T0 + timedelta(minutes=3)
    await scheduler.round()
    [tick, *_] = await ticks(pool, schedule)
    assert tick.outcome == "failed"
    assert tick.detail == schedules.CUT_OFF_DETAIL
