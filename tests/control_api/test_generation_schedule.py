"""A schedule's `generation` action starts a generation job per tick (its tick names the job and
its outcome follows the job), one at a time unless `allow_overlap`; a spec that is refused fails
its tick, not the scheduler. And the events consumer acks the generator's progress events without
applying anything."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext

from launchdeck.contracts.api import (
    GenerationAction,
    GenerationCreate,
    GenerationModel,
    ScheduleCreate,
    ScheduleUpdate,
    TemplateCreate,
    TemplateStep,
)
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import GenerationProgress
from launchdeck.contracts.subjects import generation_event_subject
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.consumers.scheduler import Scheduler
from launchdeck.control_api.domain import schedules
from launchdeck.control_api.domain.errors import Invalid
from launchdeck.control_api.domain.generations import cancel_generation
from launchdeck.control_api.domain.templates import create_template
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.settings import GenerationSettings
from launchdeck.control_api.store import generations
from launchdeck.control_api.store import schedules as schedule_store
from launchdeck.control_api.store.records import Project, Schedule
from launchdeck.libs.jobs import Delivery, Outcome
from tests.control_api.helpers import new_project
from tests.control_api.support import Api

T0 = datetime(2031, 6, 1, 8, 0, 30, tzinfo=UTC)


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
    sched = Scheduler(
        pool,
        js,
        Metrics(),
        edge_url="http://127.0.0.1:9",
        base_domain="localhost",
        poll_interval_s=0.05,
        lease_ttl_s=5,
        now=clock,
        lease_key=f"test-{uuid.uuid4().hex[:12]}",
        generation=GenerationSettings(max_items=50),
    )
    assert await sched.lease.check()
    yield sched
    await sched.close()
    await sched.lease.release()


async def new_template(pool: asyncpg.Pool) -> str:
    request = TemplateCreate(
        name=f"sched-{uuid.uuid4().hex[:8]}",
        steps=[TemplateStep(name="page", prompt="A page about {{ topic }}")],
    )
    async with pool.acquire() as conn:
        template = await create_template(conn, request, created_by="tests")
    return template.name


def action(template: str, *, allow_overlap: bool = False, **spec: object) -> GenerationAction:
    body = GenerationCreate(
        template=template,
        model=GenerationModel(provider="ollama", name="llama3.2"),
        variables=spec.pop("variables", {"topic": ["tides", "winds"]}),  # type: ignore[arg-type]
        template_version=spec.pop("template_version", None),  # type: ignore[arg-type]
    )
    return GenerationAction(spec=body, allow_overlap=allow_overlap)


async def new_schedule(pool: asyncpg.Pool, project: Project, act: GenerationAction) -> Schedule:
    request = ScheduleCreate(name=uuid.uuid4().hex[:8], cron="* * * * *", action=act)
    async with pool.acquire() as conn:
        return await schedules.create_schedule(conn, project, request, now=T0)


async def fire(scheduler: Scheduler, clock: Clock, minute: int) -> dict[uuid.UUID, str]:
    clock.at = T0 + timedelta(minutes=minute)
    return {f.schedule_id: f.outcome for f in await scheduler.round()}


async def test_a_generation_action_starts_one_job_at_a_time(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """A tick makes a queued job of the schedule's spec (its tick's detail names it); the next
    tick is skipped while that job is queued, and makes a new one once it finished. With
    allow_overlap every tick makes one."""
    project = await new_project(pool)
    template = await new_template(pool)
    single = await new_schedule(pool, project, action(template))
    overlap = await new_schedule(pool, project, action(template, allow_overlap=True))
    outcomes: dict[uuid.UUID, list[str]] = {single.id: [], overlap.id: []}
    for minute in (1, 2):
        fired = await fire(scheduler, clock, minute)
        for schedule_id, got in outcomes.items():
            got.append(fired[schedule_id])
    assert outcomes == {single.id: ["queued", "skipped"], overlap.id: ["queued", "queued"]}
    async with pool.acquire() as conn:
        first, skipped = await schedule_store.ticks_of(conn, single.id)
        jobs = await generations.list_page(conn, project.id, limit=10, before=None)
    [job] = [j for j in jobs if j.created_by == schedules.generation_author(single.id)]
    assert (job.status, job.total, job.template_name) == ("queued", 2, template)
    assert first.detail == f"generation job {job.id} (2 items)"
    assert "previous job of this schedule is still queued or running" in (skipped.detail or "")
    assert len([j for j in jobs if j.created_by == schedules.generation_author(overlap.id)]) == 2

    async with pool.acquire() as conn:
        await cancel_generation(conn, job.id, now=clock.at)
    assert (await fire(scheduler, clock, 3))[single.id] == "queued"


async def test_the_tick_follows_its_job(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock, api: Api
) -> None:
    """The tick names its job (`generation_id`), and the schedule's `last_outcome` follows the
    job's status: queued, running, succeeded; failed with the job's error; a job stopped by its
    budget is failed and says so; cancelled."""
    project = await new_project(pool)
    schedule = await new_schedule(pool, project, action(await new_template(pool)))
    assert (await fire(scheduler, clock, 1))[schedule.id] == "queued"
    async with pool.acquire() as conn:
        [tick] = await schedule_store.ticks_of(conn, schedule.id)
        [job] = await generations.list_page(conn, project.id, limit=10, before=None)
    assert (tick.generation_id, tick.generation_status) == (job.id, "queued")
    started = f"generation job {job.id} (2 items)"

    async def last_outcome() -> tuple[Any, ...]:
        reply = await api.call("GET", f"/api/v1/schedules/{schedule.id}")
        assert reply.status == 200, reply.body
        out = reply.body["last_outcome"]
        return (out["status"], out["generation_id"], out["detail"], out["run_id"])

    assert await last_outcome() == ("queued", str(job.id), started, None)
    for status, error, expected, detail in [
        ("running", None, "running", started),
        ("succeeded", None, "succeeded", started),
        ("failed", "the provider refused the key", "failed", "the provider refused the key"),
        ("budget_exceeded", None, "failed", "budget exceeded"),
        ("cancelled", None, "cancelled", started),
    ]:
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE generation_jobs SET status = $2, error = $3 WHERE id = $1",
                job.id,
                status,
                error,
            )
        got, job_id, text, _ = await last_outcome()
        assert (got, job_id) == (expected, str(job.id)), status
        assert str(text).startswith(detail), (status, text)


async def test_a_refused_spec_fails_the_tick(
    pool: asyncpg.Pool, scheduler: Scheduler, clock: Clock
) -> None:
    """A template deleted since, or more items than the control-api's limit: the tick fails
    with the reason; no job is made; the other schedules fire."""
    project = await new_project(pool)
    template = await new_template(pool)
    missing = await new_schedule(pool, project, action(template))
    async with pool.acquire() as conn:  # as if its template had gone since (an older row)
        gone = msgspec.to_builtins(action("no-such-template"))
        await schedule_store.update(conn, missing.id, action=gone)
    too_many = await new_schedule(
        pool, project, action(template, variables={"topic": list(range(51))})
    )
    fine = await new_schedule(pool, project, action(template))
    fired = await fire(scheduler, clock, 1)
    assert (fired[missing.id], fired[too_many.id], fired[fine.id]) == (
        "failed",
        "failed",
        "queued",
    )
    async with pool.acquire() as conn:
        [missing_tick] = await schedule_store.ticks_of(conn, missing.id)
        [too_many_tick] = await schedule_store.ticks_of(conn, too_many.id)
        jobs = await generations.list_page(conn, project.id, limit=10, before=None)
    assert "no template 'no-such-template'" in (missing_tick.detail or "")
    assert "more than the limit of 50" in (too_many_tick.detail or "")
    assert [j.created_by for j in jobs] == [schedules.generation_author(fine.id)]


async def test_a_schedule_naming_an_unknown_template_is_refused(pool: asyncpg.Pool) -> None:
    """422 on `action.spec.template` when the schedule is made (or its action changed)."""
    project = await new_project(pool)
    with pytest.raises(Invalid) as refused:
        await new_schedule(pool, project, action("no-such-template"))
    assert [e.field for e in refused.value.errors] == ["action.spec.template"]
    schedule = await new_schedule(pool, project, action(await new_template(pool)))
    change = ScheduleUpdate(action=action("x", template_version=1))
    async with pool.acquire() as conn:
        with pytest.raises(Invalid) as again:
            await schedules.update_schedule(conn, schedule, change, now=T0)
    assert [e.field for e in again.value.errors] == ["action.spec.template"]


def test_the_action_round_trips_as_json() -> None:
    """What the API stores is what the scheduler reads back."""
    act = action("pages", allow_overlap=True)
    stored = msgspec.to_builtins(act)
    assert stored["type"] == "generation"
    assert msgspec.convert(stored, GenerationAction) == act


async def test_the_events_consumer_acks_generation_progress(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The generator's progress on `ld.events.generation.<id>` is acked and skipped: no retry,
    no error (the job's row is kept by the RPC)."""
    metrics = Metrics()
    consumer = EventsConsumer(pool, js, metrics)
    job_id = str(uuid.uuid4())
    progress = GenerationProgress(
        job_id=job_id,
        project_id=str(uuid.uuid4()),
        status="running",
        total=5,
        done=1,
        failed=0,
        at=datetime.now(UTC),
    )
    delivery = Delivery(
        num_delivered=1, max_deliver=-1, subject=generation_event_subject(job_id), stream_seq=1
    )
    outcome = await consumer.handle(msgspec.Raw(encode(progress)), delivery)
    assert outcome is Outcome.ACK
    assert metrics.events == {"skipped": 1}
