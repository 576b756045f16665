"""The `runs` table (a run's log is read from the LOGS stream: `logs.run_log`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from launchdeck.contracts.statuses import RUN_ACTIVE
from launchdeck.control_api.store.records import Run, from_record

COLUMNS = ", ".join(Run.__struct_fields__)


async def insert(
    conn: Any,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID,
    command: str,
    timeout_s: int,
    schedule_id: uuid.UUID | None,
) -> Run:
    row = await conn.fetchrow(
        f"""INSERT INTO runs (id, project_id, command, timeout_s, schedule_id)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING {COLUMNS}""",
        run_id,
        project_id,
        command,
        timeout_s,
        schedule_id,
    )
    return from_record(Run, row)


async def get(conn: Any, run_id: uuid.UUID, *, for_update: bool = False) -> Run | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM runs WHERE id = $1{lock}", run_id)
    return None if row is None else from_record(Run, row)


async def active_for_schedule(conn: Any, schedule_id: uuid.UUID) -> bool:
    """Whether a run of the schedule is queued or running (one at a time per schedule)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE schedule_id = $1 AND status = ANY($2::text[]))",
        schedule_id,
        sorted(RUN_ACTIVE),
    )
    return found


async def list_page(
    conn: Any,
    project_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    schedule_id: uuid.UUID | None = None,
) -> list[Run]:
    """A project's runs (of one schedule, with `schedule_id`), newest first; `before` is the
    (created_at, id) of the last run of the previous page."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM runs
            WHERE project_id = $1
              AND ($2::uuid IS NULL OR schedule_id = $2)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC
            LIMIT $5""",
        project_id,
        schedule_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [from_record(Run, r) for r in rows]


async def apply_status(
    conn: Any,
    run_id: uuid.UUID,
    *,
    status: str,
    attempt: int,
    exit_code: int | None,
    error: str | None,
    deployment_id: uuid.UUID | None,
    build_id: uuid.UUID | None,
    started_at: datetime | None,
    finished_at: datetime | None,
) -> Run:
    """Record a status change; what the event leaves out keeps its value."""
    row = await conn.fetchrow(
        f"""UPDATE runs SET
                status = $2,
                attempt = $3,
                exit_code = COALESCE($4, exit_code),
                error = COALESCE($5, error),
                deployment_id = COALESCE($6, deployment_id),
                build_id = COALESCE($7, build_id),
                started_at = COALESCE(started_at, $8),
                finished_at = COALESCE($9, finished_at),
                updated_at = now()
            WHERE id = $1
            RETURNING {COLUMNS}""",
        run_id,
        status,
        attempt,
        exit_code,
        error,
        deployment_id,
        build_id,
        started_at,
        finished_at,
    )
    return from_record(Run, row)


async def cancel_queued(conn: Any, run_id: uuid.UUID, *, error: str, at: datetime) -> Run:
    """A queued run, cancelled before the deploy-engine reported it started."""
    row = await conn.fetchrow(
        f"""UPDATE runs SET
                status = 'cancelled',
                error = $2,
                cancel_requested_at = COALESCE(cancel_requested_at, $3),
                finished_at = $3,
                updated_at = now()
            WHERE id = $1
            RETURNING {COLUMNS}""",
        run_id,
        error,
        at,
    )
    return from_record(Run, row)


async def request_cancel(conn: Any, run_id: uuid.UUID, *, at: datetime) -> Run:
    """A running run's cancel was asked for (the first request's time is kept)."""
    row = await conn.fetchrow(
        f"""UPDATE runs SET cancel_requested_at = COALESCE(cancel_requested_at, $2)
            WHERE id = $1
            RETURNING {COLUMNS}""",
        run_id,
        at,
    )
    return from_record(Run, row)


async def count_by_status(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def overdue_running(conn: Any, *, grace_s: float, limit: int) -> list[Run]:
    """Runs still `running` longer than their time limit plus `grace_s` (their engine would
    have killed the command by then: it died, or its last word was lost), oldest first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM runs
            WHERE status = 'running'
              AND started_at + make_interval(secs => timeout_s + $1) < now()
            ORDER BY started_at
            LIMIT $2""",
        grace_s,
        limit,
    )
    return [from_record(Run, r) for r in rows]
