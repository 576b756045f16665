"""The `deployments` table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from launchdeck.control_api.store.records import Deployment, from_record

COLUMNS = ", ".join(Deployment.__struct_fields__)


async def insert(
    conn: Any,
    *,
    deployment_id: uuid.UUID,
    project_id: uuid.UUID,
    build_id: uuid.UUID,
    environment: str,
    trigger: str,
) -> Deployment:
    row = await conn.fetchrow(
        f"""INSERT INTO deployments (id, project_id, build_id, environment, trigger)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING {COLUMNS}""",
        deployment_id,
        project_id,
        build_id,
        environment,
        trigger,
    )
    return from_record(Deployment, row)


async def get(
    conn: Any, deployment_id: uuid.UUID, *, for_update: bool = False
) -> Deployment | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM deployments WHERE id = $1{lock}", deployment_id
    )
    return None if row is None else from_record(Deployment, row)


async def list_page(
    conn: Any,
    project_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Deployment]:
    """A project's deployments, newest first."""
    before_at, before_id = before if before else (None, None)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM deployments
            WHERE project_id = $1
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
            ORDER BY created_at DESC, id DESC
            LIMIT $4""",
        project_id,
        before_at,
        before_id,
        limit,
    )
    return [from_record(Deployment, r) for r in rows]


async def active(
    conn: Any, project_id: uuid.UUID, environment: str, *, for_update: bool = False
) -> Deployment | None:
    """The live deployment of `environment`: `active`, or `unhealthy` (its app keeps crashing,
    it is still the one routed to). One at most (`deployments_one_live_idx`)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"""SELECT {COLUMNS} FROM deployments
            WHERE project_id = $1 AND environment = $2
              AND status IN ('active', 'unhealthy'){lock}""",
        project_id,
        environment,
    )
    return None if row is None else from_record(Deployment, row)


async def live(conn: Any, project_id: uuid.UUID, environment: str) -> Deployment | None:
    """The deployment `environment` serves: `active`, or `unhealthy` while its app keeps
    crashing (it is still the one routed to); the most recently activated one if ever both."""
    row = await conn.fetchrow(
        f"""SELECT {COLUMNS} FROM deployments
            WHERE project_id = $1 AND environment = $2 AND status IN ('active', 'unhealthy')
            ORDER BY activated_at DESC NULLS LAST, created_at DESC
            LIMIT 1""",
        project_id,
        environment,
    )
    return None if row is None else from_record(Deployment, row)


async def newest_live_build(conn: Any, project_id: uuid.UUID, environment: str) -> int | None:
    """The number of the newest build that is live in `environment` (active or unhealthy), or
    on its way there (a pending or activating deployment)."""
    number: int | None = await conn.fetchval(
        """SELECT max(b.number) FROM deployments d JOIN builds b ON b.id = d.build_id
           WHERE d.project_id = $1 AND d.environment = $2
             AND d.status IN ('pending', 'activating', 'active', 'unhealthy')""",
        project_id,
        environment,
    )
    return number


async def previous_successful(
    conn: Any, project_id: uuid.UUID, environment: str, *, older_than_build: int | None
) -> Deployment | None:
    """The rollback target: the most recently activated deployment of a build older than
    `older_than_build` (a number) that was replaced normally, i.e. not itself rolled back."""
    columns = ", ".join(f"d.{c}" for c in Deployment.__struct_fields__)
    row = await conn.fetchrow(
        f"""SELECT {columns} FROM deployments d JOIN builds b ON b.id = d.build_id
            WHERE d.project_id = $1 AND d.environment = $2 AND d.status = 'superseded'
              AND d.activated_at IS NOT NULL
              AND ($3::int IS NULL OR b.number < $3)
            ORDER BY d.activated_at DESC, d.id DESC
            LIMIT 1""",
        project_id,
        environment,
        older_than_build,
    )
    return None if row is None else from_record(Deployment, row)


async def apply_status(
    conn: Any,
    deployment_id: uuid.UUID,
    *,
    status: str,
    url: str | None,
    error: str | None,
    activated_at: datetime | None,
    previous_deployment_id: uuid.UUID | None = None,
    clear_error: bool = False,
) -> Deployment:
    """Record a status change; fields left out (None) keep their value, but `clear_error`
    drops the error (an unhealthy deployment serving again: why it was unhealthy is over)."""
    row = await conn.fetchrow(
        f"""UPDATE deployments SET
                status = $2,
                url = COALESCE($3, url),
                error = CASE WHEN $7 THEN $4 ELSE COALESCE($4, error) END,
                activated_at = COALESCE(activated_at, $5),
                previous_deployment_id = COALESCE($6, previous_deployment_id),
                updated_at = now()
            WHERE id = $1
            RETURNING {COLUMNS}""",
        deployment_id,
        status,
        url,
        error,
        activated_at,
        previous_deployment_id,
        clear_error,
    )
    return from_record(Deployment, row)


async def count_by_status(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM deployments GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def silent_unsettled(conn: Any, *, silent_s: float, limit: int) -> list[Deployment]:
    """Pending or activating deployments whose status has not changed for over `silent_s`, the
    longest silent first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM deployments
            WHERE status IN ('pending', 'activating')
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at
            LIMIT $2""",
        silent_s,
        limit,
    )
    return [from_record(Deployment, r) for r in rows]
