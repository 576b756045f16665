"""The sweep of finished builds whose log was never archived.

The events consumer archives a build's log right after its final status commits; a crash in
between leaves the build without a `build_logs` row, and its log would expire with the LOGS
stream. At start-up and every few minutes, builds that finished over `MIN_AGE_S` ago (the normal
path has had its chance) and have no archive are archived, a bounded batch per run, oldest
first — but not builds finished longer ago than the archive is kept (`max_age_s`, the log
retention): pruning deleted theirs, and the stream holds nothing of them any more. One replica
sweeps at a time (a Postgres advisory lock). A log that still has no eof by then belonged to a
worker that died after reporting: it gets one, so live viewers end.
"""

from __future__ import annotations

import asyncio

import asyncpg
from nats.js import JetStreamContext

from launchdeck.control_api.logs.archive import persist_build_log
from launchdeck.control_api.logs.eof import ensure_log_eof
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store import builds
from launchdeck.libs.db import advisory_lock
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

MIN_AGE_S = 10.0
BATCH_SIZE = 50
PER_BUILD_TIMEOUT_S = 60.0
# pg_try_advisory_lock key of the sweep (any constant no other lock of ours uses).
LOCK_KEY = 0x4C44_4C4F_4753  # "LDLOGS"


async def sweep_unarchived_logs(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    *,
    min_age_s: float = MIN_AGE_S,
    limit: int = BATCH_SIZE,
    max_age_s: float | None = None,
) -> int:
    """Archive up to `limit` finished, unarchived logs; returns how many were archived (0 when
    another replica is sweeping)."""
    archived = 0
    async with pool.acquire() as conn, advisory_lock(conn, LOCK_KEY, wait=False) as held:
        if not held:
            return 0
        candidates = await builds.finished_without_log(
            conn, min_age_s=min_age_s, limit=limit, max_age_s=max_age_s
        )
        for build in candidates:
            build_id = str(build.id)
            try:
                # Finished a while ago: whatever the worker wrote is in the stream already.
                complete = await asyncio.wait_for(
                    persist_build_log(pool, js, build_id, eof_wait_s=0), PER_BUILD_TIMEOUT_S
                )
                if not complete:
                    await ensure_log_eof(js, build_id, build.status, attempt=build.attempt)
            except Exception as exc:
                log.warning("build_log_sweep_failed", build_id=build_id, error=repr(exc))
                continue
            archived += 1
    if archived:
        log.info("build_logs_swept", archived=archived)
    return archived


class LogSweeper:
    """Runs the sweep at start and then every `interval_s`, until cancelled."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        metrics: Metrics | None = None,
        *,
        interval_s: float,
        max_age_s: float | None = None,
    ) -> None:
        self._pool = pool
        self._js = js
        self._metrics = metrics
        self._interval_s = interval_s
        self._max_age_s = max_age_s  # the log retention

    async def run(self) -> None:
        await run_periodically(
            "build log sweep",
            self._interval_s,
            lambda: sweep_unarchived_logs(self._pool, self._js, max_age_s=self._max_age_s),
            on_result=self._count,
        )

    def _count(self, archived: int) -> None:
        if self._metrics is not None:
            self._metrics.count_logs_swept(archived)
