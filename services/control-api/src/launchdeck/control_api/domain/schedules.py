"""Schedules: creating and changing them (the cron expression and the time zone checked), and
firing a due tick exactly once.

Firing (`fire`) is one transaction per schedule: the schedule row is locked (SKIP LOCKED), the
tick is recorded in `schedule_ticks` — whose key (schedule, tick time) is the tick's
idempotency key — and its action happens in the same transaction: the build and its
BuildRequested, or the run and its RunRequested, through the outbox. Either the tick is
recorded with what it made, or neither exists; a scheduler that re-evaluates the same tick (a
new leader after a takeover, a replica that thought it still led) finds the row and fires
nothing. An HTTP action cannot be part of a transaction: its tick is recorded `running` first
and the caller makes the call afterwards, then settles it (`settle_http`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from launchdeck.contracts.api import (
    BuildAction,
    BuildCreate,
    CommandAction,
    GenerationAction,
    HttpAction,
    ScheduleAction,
    ScheduleCreate,
    ScheduleUpdate,
)
from launchdeck.control_api.domain import cron
from launchdeck.control_api.domain.builds import trigger_build
from launchdeck.control_api.domain.errors import Conflict, DomainError, Invalid, NotFound
from launchdeck.control_api.domain.generations import create_generation, find_generation_template
from launchdeck.control_api.domain.runs import request_run
from launchdeck.control_api.settings import GenerationSettings
from launchdeck.control_api.store import generations, projects, runs
from launchdeck.control_api.store import schedules as store
from launchdeck.control_api.store.records import Project, Schedule
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

BUILD_TRIGGER = "schedule"  # builds.trigger of a scheduled build
# How long past an HTTP action's own timeout a `running` tick waits before it counts as cut off.
HTTP_DEADLINE_GRACE = timedelta(seconds=60)
CUT_OFF_DETAIL = "the scheduler stopped before the call answered"


def action_of(schedule: Schedule) -> ScheduleAction:
    """The stored action as its API type."""
    action: ScheduleAction = msgspec.convert(schedule.action, ScheduleAction)
    return action


def _checked(expression: str, timezone: str) -> str:
    """The expression, normalised; Invalid naming the field that is wrong."""
    try:
        normalised = cron.check_expression(expression)
    except cron.CronError as exc:
        raise Invalid.field("cron", str(exc)) from None
    try:
        cron.zone(timezone)
    except cron.CronError as exc:
        raise Invalid.field("timezone", str(exc)) from None
    return normalised


def _name_taken(name: str) -> Conflict:
    return Conflict(f"the project has a schedule named {name!r} already")


async def _check_action(conn: Any, action: ScheduleAction) -> None:
    """What can be checked of an action before its first tick: a generation's template exists
    (422 on `action.spec.template…`). The rest of its spec is checked at each tick."""
    if isinstance(action, GenerationAction):
        try:
            await find_generation_template(conn, action.spec)
        except Invalid as exc:
            raise Invalid(
                exc.detail, [replace(e, field=f"action.spec.{e.field}") for e in exc.errors]
            ) from None


async def create_schedule(
    conn: Any, project: Project, request: ScheduleCreate, *, now: datetime
) -> Schedule:
    expression = _checked(request.cron, request.timezone)
    await _check_action(conn, request.action)
    next_run_at = cron.next_tick(expression, request.timezone, now) if request.enabled else None
    try:
        return await store.insert(
            conn,
            schedule_id=uuid.uuid4(),
            project_id=project.id,
            name=request.name,
            cron=expression,
            timezone=request.timezone,
            enabled=request.enabled,
            action=msgspec.to_builtins(request.action),
            next_run_at=next_run_at,
        )
    except asyncpg.UniqueViolationError:
        raise _name_taken(request.name) from None


async def update_schedule(
    conn: Any, schedule: Schedule, request: ScheduleUpdate, *, now: datetime
) -> Schedule:
    """Apply the fields present. A change of cron, time zone or enabled computes the next tick
    from `now`: ticks missed while disabled are not made up."""
    fields: dict[str, Any] = {}
    if request.name is not msgspec.UNSET:
        fields["name"] = request.name
    if request.action is not msgspec.UNSET:
        await _check_action(conn, request.action)
        fields["action"] = msgspec.to_builtins(request.action)
    expression = schedule.cron if request.cron is msgspec.UNSET else request.cron
    timezone = schedule.timezone if request.timezone is msgspec.UNSET else request.timezone
    enabled = schedule.enabled if request.enabled is msgspec.UNSET else request.enabled
    timing = (expression, timezone, enabled) != (schedule.cron, schedule.timezone, schedule.enabled)
    if timing:
        expression = _checked(expression, timezone)
        fields.update(
            cron=expression,
            timezone=timezone,
            enabled=enabled,
            next_run_at=cron.next_tick(expression, timezone, now) if enabled else None,
        )
    if not fields:
        return schedule
    try:
        return await store.update(conn, schedule.id, **fields)
    except asyncpg.UniqueViolationError:
        raise _name_taken(str(fields["name"])) from None


async def delete_schedule(conn: Any, schedule: Schedule) -> None:
    if not await store.delete(conn, schedule.id):
        raise NotFound(f"no schedule {str(schedule.id)!r}")


# --- firing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCall:
    """An HTTP action to make now, outside any transaction, then `settle_http`."""

    schedule_id: uuid.UUID
    tick_at: datetime
    project_name: str
    action: HttpAction


@dataclass(frozen=True)
class Fired:
    """What firing one schedule did: the tick and its outcome (`queued`, `running`, `failed`,
    `skipped`), the build, run or generation job it made, the HTTP call to make."""

    schedule_id: uuid.UUID
    tick_at: datetime
    outcome: str
    missed: int
    build_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    http: HttpCall | None = None
    detail: str | None = None
    generation_id: uuid.UUID | None = None


def _missed_detail(due: cron.Due) -> str | None:
    if not due.missed:
        return None
    count = f"at least {due.missed}" if due.missed_at_least else str(due.missed)
    return f"{count} earlier tick(s) were due too (made once, with this one)"


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


async def due_schedule_ids(conn: Any, now: datetime, *, limit: int) -> list[uuid.UUID]:
    """Enabled schedules whose next tick has come at `now`, the most overdue first."""
    return list(await store.due_ids(conn, now, limit=limit))


def generation_author(schedule_id: uuid.UUID) -> str:
    """The `created_by` of a schedule's generation jobs: how a tick finds whether the previous
    job still runs (the jobs table has no schedule column; the tick names its job)."""
    return f"schedule:{schedule_id}"


async def fire(
    conn: Any,
    schedule_id: uuid.UUID,
    *,
    now: datetime,
    generation: GenerationSettings | None = None,
) -> Fired | None:
    """Fire the schedule's latest due tick, once: None when it is not due (or disabled, or
    being fired by another transaction, or its tick was fired already — then only its next
    tick is brought up to date). `generation`: the limits and prices of generation jobs."""
    async with conn.transaction():
        schedule = await store.lock_due(conn, schedule_id, now)
        if schedule is None or schedule.next_run_at is None:
            return None
        try:
            due = cron.due(schedule.cron, schedule.timezone, schedule.next_run_at, now)
        except cron.CronError as exc:
            # Checked when it was set, so only a croniter or tz database change gets here: it
            # stops rather than fail every round (a PATCH of cron or timezone starts it again).
            log.warning("schedule_stopped", schedule_id=str(schedule.id), error=str(exc))
            await store.update(conn, schedule.id, next_run_at=None)
            return None
        if due is None:
            return None
        missed = _missed_detail(due)
        claimed = await store.claim_tick(
            conn,
            schedule.id,
            due.tick,
            fired_at=now,
            outcome="queued",
            missed_ticks=due.missed,
            detail=missed,
        )
        if not claimed:
            await store.advance(conn, schedule.id, next_run_at=due.next, last_run_at=None)
            return None
        settings = generation or GenerationSettings()
        fired = await _act(conn, schedule, due, now=now, missed=missed, generation=settings)
        await store.set_tick(
            conn,
            schedule.id,
            due.tick,
            outcome=fired.outcome,
            detail=fired.detail,
            build_id=fired.build_id,
            run_id=fired.run_id,
            generation_id=fired.generation_id,
            deadline_at=(
                now + timedelta(seconds=fired.http.action.timeout_s) + HTTP_DEADLINE_GRACE
                if fired.http
                else None
            ),
            settled_at=now if fired.outcome in ("failed", "skipped") else None,
        )
        await store.advance(conn, schedule.id, next_run_at=due.next, last_run_at=now)
    return fired


async def _act(
    conn: Any,
    schedule: Schedule,
    due: cron.Due,
    *,
    now: datetime,
    missed: str | None,
    generation: GenerationSettings,
) -> Fired:
    """Do the action, inside the tick's transaction; a refusal (DomainError) is the tick's
    failure, not the scheduler's: its savepoint is rolled back and the tick says why."""
    project = await projects.get(conn, schedule.project_id)
    base = Fired(schedule.id, due.tick, "queued", due.missed, detail=missed)
    if project is None:  # deleted meanwhile: its schedules go with it
        return replace(base, outcome="failed", detail="the project no longer exists")
    try:
        action = action_of(schedule)
    except msgspec.ValidationError as exc:  # stored by a version that knew more actions
        return replace(base, outcome="failed", detail=f"an action this version cannot run: {exc}")
    try:
        match action:
            case BuildAction():
                request = BuildCreate(
                    ref=action.ref, deploy=action.deploy, environment=action.environment
                )
                build = await trigger_build(conn, project, request, trigger=BUILD_TRIGGER)
                return replace(base, build_id=build.id)
            case CommandAction():
                if not action.allow_overlap and await runs.active_for_schedule(conn, schedule.id):
                    reason = "skipped: the previous run of this schedule is still queued or running"
                    return replace(base, outcome="skipped", detail=_join(reason, missed))
                run = await request_run(
                    conn,
                    project,
                    command=action.command,
                    timeout_s=action.timeout_s,
                    schedule_id=schedule.id,
                )
                return replace(base, run_id=run.id)
            case HttpAction():
                call = HttpCall(schedule.id, due.tick, project.name, action)
                return replace(base, outcome="running", http=call)
            case GenerationAction():
                author = generation_author(schedule.id)
                if not action.allow_overlap and await generations.active_created_by(
                    conn, project.id, author
                ):
                    reason = "skipped: the previous job of this schedule is still queued or running"
                    return replace(base, outcome="skipped", detail=_join(reason, missed))
                job = await create_generation(
                    conn, project, action.spec, created_by=author, settings=generation
                )
                started = f"generation job {job.id} ({job.total} items)"
                return replace(base, generation_id=job.id, detail=_join(started, missed))
    except DomainError as exc:
        return replace(base, outcome="failed", detail=_join(exc.detail, missed))
    raise AssertionError(f"unknown schedule action {action!r}")  # pragma: no cover


async def settle_http(
    conn: Any, call: HttpCall, *, succeeded: bool, detail: str, now: datetime
) -> bool:
    """Record how the HTTP call of a tick ended; False when the tick was settled already
    (cut off as overdue meanwhile)."""
    return await store.settle_running(
        conn,
        call.schedule_id,
        call.tick_at,
        outcome="succeeded" if succeeded else "failed",
        detail=detail,
        at=now,
    )


async def fail_cut_off(conn: Any, now: datetime) -> int:
    """Fail HTTP ticks still `running` past their deadline: the scheduler that made the call
    stopped before it could record the answer."""
    return int(await store.fail_overdue(conn, now, detail=CUT_OFF_DETAIL))
