"""HTTP handlers of schedules: a project's (`/api/v1/projects/{id}/schedules`: list with read,
create with write) and one schedule (`/api/v1/schedules/{id}`: read; change and delete with
write on its project — another project's token gets 404)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from launchdeck.contracts.api import (
    ScheduleCreate,
    ScheduleOut,
    ScheduleOutcome,
    ScheduleOutcomeStatus,
    ScheduleUpdate,
)
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.lookup import load_of_project
from launchdeck.control_api.api.pagination import (
    decode_str_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain import schedules as service
from launchdeck.control_api.store import schedules as store
from launchdeck.control_api.store.records import Schedule, ScheduleTick

# A build's statuses as a tick's outcome: its steps are `running`.
_BUILD_OUTCOME: dict[str, ScheduleOutcomeStatus] = {
    "queued": "queued",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
# A generation job's statuses as a tick's outcome: a job stopped by its budget failed (the
# detail says so; the items it made are kept and exportable).
_GENERATION_OUTCOME: dict[str, ScheduleOutcomeStatus] = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "budget_exceeded": "failed",
    "cancelled": "cancelled",
}
_BUDGET_EXCEEDED = "budget exceeded: the job stopped early (its finished items are kept)"


def outcome_out(tick: ScheduleTick) -> ScheduleOutcome:
    """The tick's outcome; a build's, run's or generation job's own status once it has one
    (it goes on after the tick was fired)."""
    status: ScheduleOutcomeStatus
    detail = tick.detail
    if tick.build_status is not None:
        status = _BUILD_OUTCOME.get(tick.build_status, "running")
        detail = tick.build_error or detail
    elif tick.run_status is not None:
        status = tick.run_status  # type: ignore[assignment]  # RunStatus ⊂ outcome statuses
        detail = tick.run_error or detail
    elif tick.generation_status is not None:
        status = _GENERATION_OUTCOME.get(tick.generation_status, "running")
        if tick.generation_status == "budget_exceeded":
            detail = tick.generation_error or _BUDGET_EXCEEDED
        else:
            detail = tick.generation_error or detail
    else:
        status = tick.outcome  # type: ignore[assignment]  # the table's CHECK
    return ScheduleOutcome(
        status=status,
        detail=detail,
        tick_at=tick.tick_at,
        fired_at=tick.fired_at,
        missed_ticks=tick.missed_ticks,
        build_id=tick.build_id,
        run_id=tick.run_id,
        generation_id=tick.generation_id,
    )


def schedule_out(schedule: Schedule, last: ScheduleTick | None) -> ScheduleOut:
    return ScheduleOut(
        id=schedule.id,
        project_id=schedule.project_id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        action=service.action_of(schedule),
        next_run_at=schedule.next_run_at,
        last_run_at=schedule.last_run_at,
        last_outcome=None if last is None else outcome_out(last),
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


async def _present(request: web.Request, schedule: Schedule) -> ScheduleOut:
    async with request.app[POOL].acquire() as conn:
        last = await store.last_ticks(conn, [schedule.id])
    return schedule_out(schedule, last.get(schedule.id))


async def load_schedule(request: web.Request, scope: str) -> Schedule:
    """The schedule of the `{id}` path segment, if the token may use it with `scope`; NotFound
    otherwise (also for a malformed id, and for another project's token)."""
    return await load_of_project(request, request.match_info["id"], "schedule", store.get, scope)


async def create_schedule(request: web.Request) -> web.Response:
    project = await load_project(request, "write")
    body = await read_json(request, ScheduleCreate)
    async with request.app[POOL].acquire() as conn:
        schedule = await service.create_schedule(conn, project, body, now=datetime.now(UTC))
    response = json_response(schedule_out(schedule, None), status=201)
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return response


async def list_schedules(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    page = page_request(request)
    after = decode_str_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_page(conn, project.id, limit=page.limit + 1, after_name=after)
        last = await store.last_ticks(conn, [s.id for s in rows[: page.limit]])
    return json_response(
        paginate(
            rows,
            page.limit,
            lambda s: encode_cursor(s.name),
            lambda s: schedule_out(s, last.get(s.id)),
        )
    )


async def get_schedule(request: web.Request) -> web.Response:
    schedule = await load_schedule(request, "read")
    return json_response(await _present(request, schedule))


async def update_schedule(request: web.Request) -> web.Response:
    schedule = await load_schedule(request, "write")
    body = await read_json(request, ScheduleUpdate)
    async with request.app[POOL].acquire() as conn:
        updated = await service.update_schedule(conn, schedule, body, now=datetime.now(UTC))
    return json_response(await _present(request, updated))


async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await load_schedule(request, "write")
    async with request.app[POOL].acquire() as conn:
        await service.delete_schedule(conn, schedule)
    return web.Response(status=204)


def setup_schedule_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/projects/{id}/schedules", create_schedule)
    app.router.add_get("/api/v1/projects/{id}/schedules", list_schedules)
    app.router.add_get("/api/v1/schedules/{id}", get_schedule)
    app.router.add_patch("/api/v1/schedules/{id}", update_schedule)
    app.router.add_delete("/api/v1/schedules/{id}", delete_schedule)
