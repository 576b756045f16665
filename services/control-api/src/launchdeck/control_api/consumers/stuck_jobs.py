"""The safety net of the max-deliveries watcher: jobs silent past their deadline are failed.

An advisory JetStream sends while no control-api is up is lost (`advisories`), and a command
that never reached a worker (no worker running, a work queue lost with its NATS store) produces
none at all; either way a build or deployment would stay non-terminal for ever, and its log's
viewers would wait for ever. At start-up and every `interval_s`, one replica at a time (a
Postgres advisory lock) asks `domain.abandoned_jobs.stuck_jobs` for the builds and deployments
whose status has not changed for longer than their deadline and publishes its verdicts as the
watcher does (`verdicts`): a `failed` event with a readable reason, applied by the events
consumer, and the log's eof. Runs still `running` past their time limit and a grace are failed
too (`domain.runs.fail_overdue_runs`: in Postgres at once, their event through the outbox).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext

from launchdeck.control_api.consumers.verdicts import publish_verdict
from launchdeck.control_api.domain.abandoned_jobs import Deadlines, stuck_jobs
from launchdeck.control_api.domain.runs import fail_overdue_runs
from launchdeck.control_api.metrics import Metrics
from launchdeck.libs.db import advisory_lock
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

BATCH_SIZE = 100
# pg_try_advisory_lock key of the sweep (any constant no other lock of ours uses).
LOCK_KEY = 0x4C44_5354_554B  # "LDSTUK"


async def sweep_stuck_jobs(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    deadlines: Deadlines,
    metrics: Metrics | None = None,
    *,
    limit: int = BATCH_SIZE,
) -> int:
    """Fail up to `limit` silent builds and `limit` silent deployments; returns how many
    verdicts were published (0 when another replica is sweeping)."""
    published = 0
    async with pool.acquire() as conn, advisory_lock(conn, LOCK_KEY, wait=False) as held:
        if not held:
            return 0
        verdicts = await stuck_jobs(conn, deadlines, datetime.now(UTC), limit=limit)
        for verdict in verdicts:
            if verdict.event is None:
                continue
            kind = "build" if verdict.log_eof is not None else "deployment"
            try:
                await publish_verdict(js, verdict)
            except Exception as exc:  # NATS away: still unfinished, so the next run tries again
                log.warning("stuck_job_unsettled", kind=kind, error=repr(exc))
                continue
            published += 1
            log.warning(
                "stuck_job_failed",
                kind=kind,
                project_id=verdict.event.project_id,
                build_id=verdict.event.build_id,
                deployment_id=getattr(verdict.event, "deployment_id", None),
                error=verdict.event.error,
            )
            if metrics is not None:
                metrics.count_stuck_job(kind)
        for run in await fail_overdue_runs(conn, datetime.now(UTC), limit=limit):
            published += 1
            log.warning(
                "stuck_job_failed",
                kind="run",
                project_id=str(run.project_id),
                run_id=str(run.id),
                error=run.error,
            )
            if metrics is not None:
                metrics.count_stuck_job("run")
    return published


class StuckJobsSweeper:
    """Runs the sweep at start and then every `interval_s`, until cancelled."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        deadlines: Deadlines,
        metrics: Metrics | None = None,
        *,
        interval_s: float,
    ) -> None:
        self._pool = pool
        self._js = js
        self._deadlines = deadlines
        self._metrics = metrics
        self._interval_s = interval_s

    async def run(self) -> None:
        await run_periodically(
            "stuck jobs sweep",
            self._interval_s,
            lambda: sweep_stuck_jobs(self._pool, self._js, self._deadlines, self._metrics),
        )
