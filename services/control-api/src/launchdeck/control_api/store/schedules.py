"""The `schedules` and `schedule_ticks` tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from launchdeck.control_api.store.records import Schedule, ScheduleTick, from_record

COLUMNS = ", ".join(Schedule.__struct_fields__)
_TICK_OWN = (
    "schedule_id, tick_at, fired_at, outcome, missed_ticks, build_id, run_id, generation_id, "
    "detail, deadline_at, settled_at"
)
# A tick with the status of what it made (runs: migration 0009; generation jobs: 0012, named
# by the tick since 0013).
_TICK_SELECT = f"""
    SELECT {", ".join(f"t.{c.strip()}" for c in _TICK_OWN.split(","))},
           b.status AS build_status, b.error AS build_error,
           r.status AS run_status, r.error AS run_error,
           g.status AS generation_status, g.error AS generation_error
    FROM schedule_ticks t
    LEFT JOIN builds b ON b.id = t.build_id
    LEFT JOIN runs r ON r.id = t.run_id
    LEFT JOIN generation_jobs g ON g.id = t.generation_id"""


async def insert(
    conn: Any,
    *,
    schedule_id: uuid.UUID,
    project_id: uuid.UUID,
    name: str,
    cron: str,
    timezone: str,
    enabled: bool,
    action: dict[str, Any],
    next_run_at: datetime | None,
) -> Schedule:
    """Raises asyncpg.UniqueViolationError when the project has a schedule of that name."""
    row = await conn.fetchrow(
        f"""INSERT INTO schedules (id, project_id, name, cron, timezone, enabled, action,
                                   next_run_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING {COLUMNS}""",
        schedule_id,
        project_id,
        name,
        cron,
        timezone,
        enabled,
        action,
        next_run_at,
    )
    return from_record(Schedule, row)


async def get(conn: Any, schedule_id: uuid.UUID, *, for_update: bool = False) -> Schedule | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM schedules WHERE id = $1{lock}", schedule_id)
    return None if row is None else from_record(Schedule, row)


async def lock_due(conn: Any, schedule_id: uuid.UUID, now: datetime) -> Schedule | None:
    """The schedule, locked, if it is enabled and due at `now` and no other transaction holds
    it (SKIP LOCKED: a replica firing it meanwhile keeps it)."""
    row = await conn.fetchrow(
        f"""SELECT {COLUMNS} FROM schedules
            WHERE id = $1 AND enabled AND next_run_at <= $2
            FOR UPDATE SKIP LOCKED""",
        schedule_id,
        now,
    )
    return None if row is None else from_record(Schedule, row)


async def due_ids(conn: Any, now: datetime, *, limit: int) -> list[uuid.UUID]:
    """Enabled schedules whose next tick is at or before `now`, the most overdue first."""
    rows = await conn.fetch(
        """SELECT id FROM schedules
           WHERE enabled AND next_run_at <= $1
           ORDER BY next_run_at
           LIMIT $2""",
        now,
        limit,
    )
    return [r["id"] for r in rows]


async def list_page(
    conn: Any, project_id: uuid.UUID, *, limit: int, after_name: str | None
) -> list[Schedule]:
    """A project's schedules by name."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM schedules
            WHERE project_id = $1 AND ($2::text IS NULL OR name > $2)
            ORDER BY name
            LIMIT $3""",
        project_id,
        after_name,
        limit,
    )
    return [from_record(Schedule, r) for r in rows]


async def update(conn: Any, schedule_id: uuid.UUID, **fields: Any) -> Schedule:
    """Set `fields` (column → value) and `updated_at`; the schedule must exist. Raises
    asyncpg.UniqueViolationError for a name the project already uses."""
    names = list(fields)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    row = await conn.fetchrow(
        f"""UPDATE schedules SET {assignments}, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        schedule_id,
        *(fields[name] for name in names),
    )
    return from_record(Schedule, row)


async def advance(
    conn: Any, schedule_id: uuid.UUID, *, next_run_at: datetime, last_run_at: datetime | None
) -> None:
    """The next tick to fire, and when it last fired (None: unchanged)."""
    await conn.execute(
        """UPDATE schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at)
           WHERE id = $1""",
        schedule_id,
        next_run_at,
        last_run_at,
    )


async def delete(conn: Any, schedule_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM schedules WHERE id = $1", schedule_id)
    return bool(status == "DELETE 1")


# --- ticks ------------------------------------------------------------------------------------


async def claim_tick(
    conn: Any,
    schedule_id: uuid.UUID,
    tick_at: datetime,
    *,
    fired_at: datetime,
    outcome: str,
    missed_ticks: int,
    detail: str | None,
) -> bool:
    """Record the tick; False when it is recorded already (fired before, by this replica or
    another): the idempotency key of a tick is (schedule, tick time)."""
    row = await conn.fetchrow(
        """INSERT INTO schedule_ticks (schedule_id, tick_at, fired_at, outcome, missed_ticks,
                                       detail)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (schedule_id, tick_at) DO NOTHING
           RETURNING tick_at""",
        schedule_id,
        tick_at,
        fired_at,
        outcome,
        missed_ticks,
        detail,
    )
    return row is not None


async def set_tick(
    conn: Any,
    schedule_id: uuid.UUID,
    tick_at: datetime,
    *,
    outcome: str,
    detail: str | None,
    build_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    generation_id: uuid.UUID | None = None,
    deadline_at: datetime | None = None,
    settled_at: datetime | None = None,
) -> None:
    await conn.execute(
        """UPDATE schedule_ticks
           SET outcome = $3, detail = $4, build_id = coalesce($5, build_id),
               run_id = coalesce($6, run_id), deadline_at = coalesce($7, deadline_at),
               settled_at = $8, generation_id = coalesce($9, generation_id)
           WHERE schedule_id = $1 AND tick_at = $2""",
        schedule_id,
        tick_at,
        outcome,
        detail,
        build_id,
        run_id,
        deadline_at,
        settled_at,
        generation_id,
    )


async def settle_running(
    conn: Any, schedule_id: uuid.UUID, tick_at: datetime, *, outcome: str, detail: str, at: datetime
) -> bool:
    """Settle a `running` (HTTP) tick, `detail` before what it said already (missed ticks);
    False when it was settled already."""
    status = await conn.execute(
        """UPDATE schedule_ticks
           SET outcome = $3, detail = concat_ws('; ', $4::text, detail), settled_at = $5
           WHERE schedule_id = $1 AND tick_at = $2 AND outcome = 'running'""",
        schedule_id,
        tick_at,
        outcome,
        detail,
        at,
    )
    return bool(status == "UPDATE 1")


async def fail_overdue(conn: Any, now: datetime, *, detail: str) -> int:
    """Fail `running` ticks past their deadline (their scheduler stopped mid-call)."""
    status = await conn.execute(
        """UPDATE schedule_ticks SET outcome = 'failed', detail = $2, settled_at = $1
           WHERE outcome = 'running' AND deadline_at < $1""",
        now,
        detail,
    )
    return int(status.split()[-1])


async def last_ticks(conn: Any, schedule_ids: list[uuid.UUID]) -> dict[uuid.UUID, ScheduleTick]:
    """The latest tick of each of `schedule_ids` that has one."""
    if not schedule_ids:
        return {}
    rows = await conn.fetch(
        f"""{_TICK_SELECT}
            WHERE t.schedule_id = ANY($1::uuid[])
              AND t.tick_at = (SELECT max(tick_at) FROM schedule_ticks
                               WHERE schedule_id = t.schedule_id)""",
        schedule_ids,
    )
    return {r["schedule_id"]: from_record(ScheduleTick, r) for r in rows}


async def ticks_of(conn: Any, schedule_id: uuid.UUID) -> list[ScheduleTick]:
    """Every tick of a schedule, oldest first."""
    rows = await conn.fetch(
        f"{_TICK_SELECT} WHERE t.schedule_id = $1 ORDER BY t.tick_at", schedule_id
    )
    return [from_record(ScheduleTick, r) for r in rows]
