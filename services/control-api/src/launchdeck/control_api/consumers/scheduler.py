"""The scheduler: fires due schedule ticks, on exactly one control-api replica at a time.

Every replica runs it; only the holder of the `scheduler` lease (`libs.lease`, NATS KV bucket
`leases`) acts. Every `poll_interval_s` the holder fires each enabled schedule whose next tick
has come (`domain.schedules.fire`: one transaction per schedule, the tick's row its
idempotency key), then makes the HTTP calls of the HTTP actions it fired — outside any
transaction, each a task of its own with its timeout, through the edge with the project's
production host — and records their answers. It also fails HTTP ticks left `running` past
their deadline by a scheduler that stopped mid-call.

`now` is a callable so tests drive the schedules with their own clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
from nats.js import JetStreamContext

from launchdeck.control_api.domain import schedules
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.settings import GenerationSettings
from launchdeck.libs.lease import Lease
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

LEASE_KEY = "scheduler"
# Schedules fired per round at most (the next round, a poll interval later, takes the rest).
BATCH = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        metrics: Metrics | None = None,
        *,
        edge_url: str,
        base_domain: str,
        poll_interval_s: float,
        lease_ttl_s: float,
        now: Callable[[], datetime] = utcnow,
        holder: str | None = None,
        lease_key: str = LEASE_KEY,
        on_change: Callable[[uuid.UUID | None], None] | None = None,
        generation: GenerationSettings | None = None,
    ) -> None:
        self._pool = pool
        # The limits and prices of the generation jobs that schedules start.
        self._generation = generation or GenerationSettings()
        # Told (None: some project) once a fired tick made a build: the builds-list page cache.
        self._on_change = on_change
        self.metrics = metrics
        self._edge_url = edge_url.rstrip("/")
        self._base_domain = base_domain
        self._poll_interval_s = poll_interval_s
        self._now = now
        self.lease = Lease(
            js, lease_key, ttl_s=lease_ttl_s, holder=holder, on_change=self._lease_changed
        )
        self._calls: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        lease = asyncio.create_task(self.lease.run(), name="scheduler-lease")
        try:
            await run_periodically("scheduler", self._poll_interval_s, self.round)
        finally:
            lease.cancel()
            for task in self._calls:
                task.cancel()
            await asyncio.gather(lease, *self._calls, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Close the HTTP client of the HTTP actions (`run` does it when it ends)."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def round(self) -> list[schedules.Fired]:
        """Fire what is due, if this replica holds the lease (else nothing)."""
        if not self.lease.held:
            return []
        now = self._now()
        fired: list[schedules.Fired] = []
        async with self._pool.acquire() as conn:
            await schedules.fail_cut_off(conn, now)
            for schedule_id in await schedules.due_schedule_ids(conn, now, limit=BATCH):
                if not self.lease.held:  # lost it mid-round: the new holder goes on
                    break
                try:
                    outcome = await schedules.fire(
                        conn, schedule_id, now=now, generation=self._generation
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    raise  # Postgres away: the round fails (an outage), the next one retries
                except Exception as exc:  # one schedule's fault must not stop the others
                    log.exception(
                        "schedule_not_fired", schedule_id=str(schedule_id), error=repr(exc)
                    )
                    continue
                if outcome is not None:
                    fired.append(outcome)
        for outcome in fired:
            self._fired(outcome)
            if outcome.build_id is not None and self._on_change is not None:
                self._on_change(None)
            if outcome.http is not None:
                task = asyncio.create_task(self._call(outcome.http), name="schedule-http")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
        return fired

    def _fired(self, fired: schedules.Fired) -> None:
        log.info(
            "schedule_fired",
            schedule_id=str(fired.schedule_id),
            tick_at=fired.tick_at.isoformat(),
            outcome=fired.outcome,
            missed=fired.missed,
            build_id=str(fired.build_id) if fired.build_id else None,
            run_id=str(fired.run_id) if fired.run_id else None,
            generation_id=str(fired.generation_id) if fired.generation_id else None,
            detail=fired.detail,
        )
        if self.metrics is not None:
            self.metrics.count_schedule_tick(fired.outcome)

    async def _call(self, call: schedules.HttpCall) -> None:
        """Make the HTTP action's request through the edge, then settle its tick."""
        action = call.action
        host = f"{call.project_name}.{self._base_domain}"
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.request(
                action.method,
                self._edge_url + action.path,
                headers={"Host": host, "User-Agent": "launchdeck-scheduler"},
                timeout=aiohttp.ClientTimeout(total=action.timeout_s),
                allow_redirects=False,
            ) as resp:
                succeeded = 200 <= resp.status < 300
                detail = f"{action.method} {action.path} answered {resp.status}"
        except TimeoutError:
            succeeded, detail = False, f"{action.method} {action.path}: no answer within "
            detail += f"{action.timeout_s}s"
        except aiohttp.ClientError as exc:
            succeeded, detail = False, f"{action.method} {action.path} failed: {exc}"
        try:
            async with self._pool.acquire() as conn:
                await schedules.settle_http(
                    conn, call, succeeded=succeeded, detail=detail, now=self._now()
                )
        except Exception as exc:  # the deadline sweep settles it as cut off
            log.warning(
                "schedule_http_not_settled", schedule_id=str(call.schedule_id), error=repr(exc)
            )
            return
        log.info(
            "schedule_http_done",
            schedule_id=str(call.schedule_id),
            tick_at=call.tick_at.isoformat(),
            succeeded=succeeded,
            detail=detail,
        )
        if self.metrics is not None:
            self.metrics.count_schedule_tick("succeeded" if succeeded else "failed")

    def _lease_changed(self, held: bool) -> None:
        log.info("scheduler_leader" if held else "scheduler_follower", holder=self.lease.holder)
        if self.metrics is not None:
            self.metrics.set_scheduler_leader(held)
