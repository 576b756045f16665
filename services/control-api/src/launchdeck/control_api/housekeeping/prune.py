"""Periodic pruning: archived build logs and processed-event rows by age, artifacts outside what
deployments and rollbacks need.

Without it, `build_logs` and `processed_events` grow by a row per build and per event for ever,
and the `artifacts` object store by one archive per build until it is full and every publish of
an artifact fails. At start-up and every `interval_s`, one replica at a time (a Postgres advisory
lock):
- archived logs stored longer ago than `Retention.build_logs_s` are deleted (the log endpoints
  then answer as for a log that was never kept; the log sweep does not archive them again);
- inbox rows older than `Retention.processed_events_s` are deleted: the EVENTS stream keeps 7
  days, so an older event is never redelivered and its row guards against nothing;
- webhook deliveries older than `Retention.webhook_deliveries_s` are deleted (git hosts
  redeliver within days: GitHub's redelivery goes back 3);
- artifacts `domain.artifacts` says nobody needs are removed from the object store.
Rows go in bounded batches, so a first run over years of history does not hold long locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
from nats.js import JetStreamContext

from launchdeck.control_api.domain.artifacts import MIN_AGE, artifacts_to_prune
from launchdeck.control_api.housekeeping.artifacts import delete_artifact, stored_artifacts
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store import build_logs, inbox, webhook_deliveries
from launchdeck.libs.db import advisory_lock
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

BATCH_SIZE = 1000
# pg_try_advisory_lock key of the pruning (any constant no other lock of ours uses).
LOCK_KEY = 0x4C44_5052_554E  # "LDPRUN"


@dataclass(frozen=True)
class Retention:
    build_logs_s: float  # archived logs are kept this long
    processed_events_s: float  # inbox rows are kept this long
    keep_artifacts: int  # succeeded production builds per project whose artifact stays
    artifacts_min_age: timedelta = MIN_AGE  # an artifact stored more recently stays
    webhook_deliveries_s: float = 30 * 24 * 3600.0  # a replay within it builds nothing


@dataclass
class Pruned:
    build_logs: int = 0
    processed_events: int = 0
    artifacts: list[str] = field(default_factory=list)
    webhook_deliveries: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "build_logs": self.build_logs,
            "processed_events": self.processed_events,
            "artifacts": len(self.artifacts),
            "webhook_deliveries": self.webhook_deliveries,
        }


class _DeleteOlderThan(Protocol):
    async def __call__(self, conn: Any, age_s: float, *, limit: int) -> int: ...


async def _delete_in_batches(conn: Any, delete: _DeleteOlderThan, age_s: float) -> int:
    total = 0
    while True:
        deleted = await delete(conn, age_s, limit=BATCH_SIZE)
        total += deleted
        if deleted < BATCH_SIZE:
            return total


async def prune_once(pool: asyncpg.Pool, js: JetStreamContext, retention: Retention) -> Pruned:
    """One pruning run (nothing when another replica is pruning)."""
    pruned = Pruned()
    async with pool.acquire() as conn, advisory_lock(conn, LOCK_KEY, wait=False) as held:
        if not held:
            return pruned
        pruned.build_logs = await _delete_in_batches(
            conn, build_logs.delete_older_than, retention.build_logs_s
        )
        pruned.processed_events = await _delete_in_batches(
            conn, inbox.delete_older_than, retention.processed_events_s
        )
        pruned.webhook_deliveries = await _delete_in_batches(
            conn, webhook_deliveries.delete_older_than, retention.webhook_deliveries_s
        )
        stored = await stored_artifacts(js)
        doomed = await artifacts_to_prune(
            conn,
            stored,
            keep=retention.keep_artifacts,
            now=datetime.now(UTC),
            min_age=retention.artifacts_min_age,
        )
        for key in doomed:
            await delete_artifact(js, key)
            pruned.artifacts.append(key)
    if any(pruned.counts().values()):
        log.info("pruned", **pruned.counts())
    return pruned


class Pruner:
    """Runs `prune_once` at start and then every `interval_s`, until cancelled."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        retention: Retention,
        metrics: Metrics | None = None,
        *,
        interval_s: float,
    ) -> None:
        self._pool = pool
        self._js = js
        self._retention = retention
        self._metrics = metrics
        self._interval_s = interval_s

    async def run(self) -> None:
        await run_periodically(
            "pruning",
            self._interval_s,
            lambda: prune_once(self._pool, self._js, self._retention),
            on_result=self._count,
        )

    def _count(self, pruned: Pruned) -> None:
        if self._metrics is not None:
            for what, n in pruned.counts().items():
                self._metrics.count_pruned(what, n)
