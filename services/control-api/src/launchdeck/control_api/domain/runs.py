"""Running a command of a project's live release once (by hand or from a schedule): the run
row and its RunRequested command commit together; cancelling a run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from launchdeck.contracts.messages import RunRequested, RunStatusChanged
from launchdeck.contracts.statuses import RUN_FINISHED, RUN_RANK
from launchdeck.contracts.subjects import SUBJECT_RUN_JOBS, run_event_subject
from launchdeck.control_api.domain.errors import Conflict, NotFound
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import runs
from launchdeck.control_api.store.records import Project, Run
from launchdeck.libs import outbox
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)


async def request_run(
    conn: Any,
    project: Project,
    *,
    command: str,
    timeout_s: int,
    schedule_id: uuid.UUID | None,
) -> Run:
    """Insert a queued run and enqueue its RunRequested, in the caller's transaction (a
    savepoint when there is one: the schedules' scheduler records its tick alongside).

    The outbox row id (= the run id) becomes the command's Nats-Msg-Id, so a relay retry never
    starts the command twice.
    """
    async with conn.transaction():
        run = await runs.insert(
            conn,
            run_id=uuid.uuid4(),
            project_id=project.id,
            command=command,
            timeout_s=timeout_s,
            schedule_id=schedule_id,
        )
        job = RunRequested(
            run_id=str(run.id),
            project_id=str(project.id),
            project_name=project.name,
            command=command,
            timeout_s=timeout_s,
            requested_at=datetime.now(UTC),
        )
        await outbox.enqueue(conn, SUBJECT_RUN_JOBS, job, msg_id=run.id)
    return run


def _is_stale(run: Run, event: RunStatusChanged) -> str | None:
    """Why the event must not change the run, or None: a run never leaves a final status and
    never moves back (`running` after `failed`: a late or redelivered event)."""
    if run.status in RUN_FINISHED:
        return "run already finished"
    if RUN_RANK[event.status] < RUN_RANK[run.status]:
        return "event older than the run's status"
    return None


async def apply_run_event(conn: Any, event: RunStatusChanged) -> bool:
    """Apply a RunStatusChanged in the caller's transaction (with its inbox row); False when
    it changed nothing (an unknown run, or a stale event)."""
    run_id = parse_uuid(event.run_id)
    run = await runs.get(conn, run_id, for_update=True) if run_id else None
    if run is None:
        log.warning("event_for_unknown_run", run_id=event.run_id, status=event.status)
        return False
    if reason := _is_stale(run, event):
        log.info(
            "run_event_ignored",
            run_id=event.run_id,
            status=event.status,
            current=run.status,
            reason=reason,
        )
        return False
    await runs.apply_status(
        conn,
        run.id,
        status=event.status,
        attempt=max(event.attempt, run.attempt),
        exit_code=event.exit_code,
        error=event.error,
        deployment_id=parse_uuid(event.deployment_id) if event.deployment_id else None,
        build_id=parse_uuid(event.build_id) if event.build_id else None,
        started_at=event.at if event.status == "running" else None,
        finished_at=event.at if event.status in RUN_FINISHED else None,
    )
    return True


# The `error` of a run cancelled while queued (the deploy-engine says `Cancelled on request` of
# one it stopped).
CANCELLED_QUEUED_ERROR = "Cancelled on request before it started"


async def cancel_run(conn: Any, run_id: uuid.UUID, *, now: datetime) -> Run:
    """Cancel a run that has not finished (Conflict when it has); the caller has written the
    run's cancel mark before (the deploy-engine reads it).

    A queued run is `cancelled` at once, and the event saying so goes to the outbox (project
    viewers see it; the deploy-engine that picks the command up finds the mark and drops it). A
    running run records when its cancel was asked for: its engine stops it within a second and
    reports `cancelled` (or what it finished as, if it finished first).
    """
    async with conn.transaction():
        run = await runs.get(conn, run_id, for_update=True)
        if run is None:
            raise NotFound(f"no run {str(run_id)!r}")
        if run.status in RUN_FINISHED:
            raise Conflict(f"run {run.id} has already finished: {run.status}")
        if run.status != "queued":
            return await runs.request_cancel(conn, run.id, at=now)
        cancelled = await runs.cancel_queued(conn, run.id, error=CANCELLED_QUEUED_ERROR, at=now)
        event = RunStatusChanged(
            run_id=str(run.id),
            project_id=str(run.project_id),
            status="cancelled",
            attempt=run.attempt,
            error=CANCELLED_QUEUED_ERROR,
            at=now,
        )
        await outbox.enqueue(conn, run_event_subject(str(run.project_id), str(run.id)), event)
    return cancelled


# How long past its time limit a run may stay `running` before it is failed (its engine kills
# the command at the limit and reports within seconds; this covers an engine that died).
OVERDUE_GRACE_S = 300.0


def overdue_error(run: Run) -> str:
    return (
        f"no word from the deploy-engine {run.timeout_s + OVERDUE_GRACE_S:.0f} s after the run "
        "started (past its time limit): its engine stopped while it ran"
    )


async def fail_overdue_runs(
    conn: Any, now: datetime, *, grace_s: float = OVERDUE_GRACE_S, limit: int = 100
) -> list[Run]:
    """Fail the runs still `running` past their time limit and `grace_s` (the stuck-jobs
    sweep's safety net: a schedule waits for its run to finish before firing the next); each
    failure is announced on the run's event subject through the outbox."""
    failed: list[Run] = []
    for run in await runs.overdue_running(conn, grace_s=grace_s, limit=limit):
        async with conn.transaction():
            current = await runs.get(conn, run.id, for_update=True)
            if current is None or current.status != "running":
                continue
            error = overdue_error(current)
            updated = await runs.apply_status(
                conn,
                run.id,
                status="failed",
                attempt=current.attempt,
                exit_code=None,
                error=error,
                deployment_id=None,
                build_id=None,
                started_at=None,
                finished_at=now,
            )
            event = RunStatusChanged(
                run_id=str(run.id),
                project_id=str(run.project_id),
                status="failed",
                attempt=current.attempt,
                error=error,
                at=now,
            )
            subject = run_event_subject(str(run.project_id), str(run.id))
            await outbox.enqueue(conn, subject, event)
            failed.append(updated)
    return failed
