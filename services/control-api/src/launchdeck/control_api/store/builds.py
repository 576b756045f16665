"""The `builds` table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from launchdeck.contracts.messages import Artifact
from launchdeck.contracts.statuses import BUILD_FINISHED
from launchdeck.control_api.store.records import Build, from_record

COLUMNS = ", ".join(Build.__struct_fields__)


async def insert(
    conn: Any,
    *,
    build_id: uuid.UUID,
    project_id: uuid.UUID,
    number: int,
    ref: str,
    trigger: str,
    deploy: bool,
    environment: str,
    commit_sha: str | None = None,
    commit_message: str | None = None,
) -> Build:
    row = await conn.fetchrow(
        f"""INSERT INTO builds (id, project_id, number, ref, trigger, deploy, environment,
                                commit_sha, commit_message)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            RETURNING {COLUMNS}""",
        build_id,
        project_id,
        number,
        ref,
        trigger,
        deploy,
        environment,
        commit_sha,
        commit_message,
    )
    return from_record(Build, row)


async def get(conn: Any, build_id: uuid.UUID, *, for_update: bool = False) -> Build | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM builds WHERE id = $1{lock}", build_id)
    return None if row is None else from_record(Build, row)


async def list_page(
    conn: Any, project_id: uuid.UUID, *, limit: int, before_number: int | None
) -> list[Build]:
    """A project's builds, newest (highest number) first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM builds
            WHERE project_id = $1 AND ($2::int IS NULL OR number < $2)
            ORDER BY number DESC
            LIMIT $3""",
        project_id,
        before_number,
        limit,
    )
    return [from_record(Build, r) for r in rows]


# A project (by id or by name) and one page of its builds in one round trip: the builds list is
# the API's hottest read. One row per build, or a single row with NULL build columns when the
# project has none; no row when there is no such project.
_PROJECT_PAGE = f"""SELECT p.id AS page_project_id, b.* FROM projects p
    LEFT JOIN LATERAL (
        SELECT {COLUMNS} FROM builds
        WHERE project_id = p.id AND ($2::int IS NULL OR number < $2)
        ORDER BY number DESC
        LIMIT $3
    ) b ON true
    WHERE p.{{key}} = $1
    ORDER BY b.number DESC"""
_PROJECT_PAGE_BY_ID = _PROJECT_PAGE.format(key="id")
_PROJECT_PAGE_BY_NAME = _PROJECT_PAGE.format(key="name")


async def project_page(
    conn: Any, project: uuid.UUID | str, *, limit: int, before_number: int | None
) -> tuple[uuid.UUID | None, list[Any]]:
    """The id of the project whose id (a UUID) or name (a str) is `project`, None if there is
    none, and a page of its builds, newest first, as rows (`Build`'s columns by name): the
    caller presents them without a `Build` in between."""
    query = _PROJECT_PAGE_BY_ID if isinstance(project, uuid.UUID) else _PROJECT_PAGE_BY_NAME
    rows = await conn.fetch(query, project, before_number, limit)
    if not rows:
        return None, []
    return rows[0]["page_project_id"], [r for r in rows if r["id"] is not None]


async def apply_status(
    conn: Any,
    build_id: uuid.UUID,
    *,
    status: str,
    step: str | None,
    attempt: int,
    error: str | None,
    commit_sha: str | None,
    commit_message: str | None,
    artifact: Artifact | None,
    started_at: datetime | None,
    finished_at: datetime | None,
    reason: str | None = None,
) -> Build:
    """Record a status change; fields the event leaves out keep their value (the step too,
    when the build failed or was cancelled: it says where)."""
    row = await conn.fetchrow(
        f"""UPDATE builds SET
                status = $2,
                step = CASE WHEN $2 IN ('failed', 'cancelled') THEN COALESCE($3, step)
                            ELSE $3 END,
                attempt = $4,
                error = COALESCE($5, error),
                commit_sha = COALESCE($6, commit_sha),
                commit_message = COALESCE($7, commit_message),
                artifact_key = COALESCE($8, artifact_key),
                artifact_sha256 = COALESCE($9, artifact_sha256),
                artifact_size = COALESCE($10, artifact_size),
                artifact_kind = COALESCE($11, artifact_kind),
                start_command = COALESCE($12, start_command),
                health_path = COALESCE($13, health_path),
                started_at = COALESCE(started_at, $14),
                finished_at = COALESCE($15, finished_at),
                reason = COALESCE($16, reason),
                updated_at = now()
            WHERE id = $1
            RETURNING {COLUMNS}""",
        build_id,
        status,
        step,
        attempt,
        error,
        commit_sha,
        commit_message,
        artifact.key if artifact else None,
        artifact.sha256 if artifact else None,
        artifact.size if artifact else None,
        artifact.kind if artifact else None,
        artifact.start_command if artifact else None,
        artifact.health_path if artifact else None,
        started_at,
        finished_at,
        reason,
    )
    return from_record(Build, row)


async def cancel_queued(conn: Any, build_id: uuid.UUID, *, error: str, at: datetime) -> Build:
    """A queued build, cancelled before any worker reported it started: `cancelled` now."""
    row = await conn.fetchrow(
        f"""UPDATE builds SET
                status = 'cancelled',
                error = $2,
                reason = 'cancelled',
                cancel_requested_at = COALESCE(cancel_requested_at, $3),
                finished_at = $3,
                updated_at = now()
            WHERE id = $1
            RETURNING {COLUMNS}""",
        build_id,
        error,
        at,
    )
    return from_record(Build, row)


async def request_cancel(conn: Any, build_id: uuid.UUID, *, at: datetime) -> Build:
    """A running build's cancel was asked for (the first request's time is kept); its worker
    reports `cancelled` once it has stopped it."""
    row = await conn.fetchrow(
        f"""UPDATE builds SET cancel_requested_at = COALESCE(cancel_requested_at, $2)
            WHERE id = $1
            RETURNING {COLUMNS}""",
        build_id,
        at,
    )
    return from_record(Build, row)


async def set_deployment(conn: Any, build_id: uuid.UUID, deployment_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE builds SET deployment_id = $2 WHERE id = $1", build_id, deployment_id
    )


async def count_by_status(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM builds GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def finished_without_log(
    conn: Any, *, min_age_s: float, limit: int, max_age_s: float | None = None
) -> list[Build]:
    """Finished builds (the oldest first) that finished over `min_age_s` ago — and, with
    `max_age_s`, less than that long ago — and whose log was never archived."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM builds b
            WHERE b.status = ANY($3::text[])
              AND b.finished_at < now() - make_interval(secs => $1)
              AND ($4::float8 IS NULL OR b.finished_at > now() - make_interval(secs => $4))
              AND NOT EXISTS (SELECT 1 FROM build_logs l WHERE l.build_id = b.id)
            ORDER BY b.finished_at
            LIMIT $2""",
        min_age_s,
        limit,
        sorted(BUILD_FINISHED),
        max_age_s,
    )
    return [from_record(Build, r) for r in rows]


async def silent_unfinished(conn: Any, *, silent_s: float, limit: int) -> list[Build]:
    """Unfinished builds whose status has not changed for over `silent_s`, the longest silent
    first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM builds
            WHERE status <> ALL($3::text[])
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at
            LIMIT $2""",
        silent_s,
        limit,
        sorted(BUILD_FINISHED),
    )
    return [from_record(Build, r) for r in rows]


async def artifact_keepers(conn: Any, build_ids: list[uuid.UUID], *, keep: int) -> set[uuid.UUID]:
    """Of `build_ids`, the builds whose artifact must stay: unfinished ones (their artifact may
    be on its way), those a deployment is pending, activating or live (active or unhealthy) for,
    and each project's `keep` newest succeeded production builds (what a rollback or a redeploy
    goes back to).
    Ids of builds that no longer exist (their project was deleted) are never among them."""
    rows = await conn.fetch(
        """SELECT b.id FROM builds b
           WHERE b.id = ANY($1::uuid[])
             AND (
               b.status <> ALL($3::text[])
               OR EXISTS (
                   SELECT 1 FROM deployments d
                   WHERE d.build_id = b.id
                     AND d.status IN ('pending', 'activating', 'active', 'unhealthy'))
               OR b.id IN (
                   SELECT ranked.id FROM (
                       SELECT r.id, row_number() OVER (
                           PARTITION BY r.project_id ORDER BY r.number DESC) AS place
                       FROM builds r
                       WHERE r.status = 'succeeded' AND r.environment = 'production'
                         AND r.project_id IN (
                             SELECT project_id FROM builds WHERE id = ANY($1::uuid[]))
                   ) ranked
                   WHERE ranked.place <= $2)
             )""",
        build_ids,
        keep,
        sorted(BUILD_FINISHED),
    )
    return {r["id"] for r in rows}
