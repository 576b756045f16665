"""Watching for abandoned jobs: the transport half (NATS) of `abandoned_jobs`.

JetStream publishes `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` when it
stops redelivering a command. The watcher subscribes to it for the build and deploy work queues
in a queue group (several control-api replicas handle each advisory once), reads the command by
its stream sequence, publishes what `abandoned_jobs` decides on EVENTS (with a `Nats-Msg-Id`) and
the log's eof (`verdicts`), then deletes the dead command: in a work-queue stream it would stay
forever.

Advisories are core NATS messages (not stored): one that cannot be handled now is retried here
for a while before giving up, and one sent while no control-api was up is lost — `stuck_jobs`
is the safety net that fails such a job by its deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildRequested, DeployRequested
from launchdeck.contracts.subjects import (
    CONSUMER_BUILD_WORKERS,
    CONSUMER_DEPLOY_ENGINES,
    STREAM_BUILDS,
    STREAM_DEPLOYS,
    max_deliveries_advisory_subject,
)
from launchdeck.control_api.consumers.queue_group import QueueGroupServer
from launchdeck.control_api.consumers.verdicts import publish_verdict
from launchdeck.control_api.domain.abandoned_jobs import Verdict, judge_build, judge_deployment
from launchdeck.control_api.metrics import Metrics
from launchdeck.libs.logging import bind_ids, get_logger
from launchdeck.libs.retry import retrying

log = get_logger(__name__)

# Tries of one advisory whose handling fails (Postgres or NATS unavailable): about two minutes
# of doubling waits, then it is given up (logged, counted as `error`).
RETRY_ATTEMPTS = 7
RETRY_FIRST_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 60.0


class MaxDeliveriesAdvisory(msgspec.Struct, frozen=True):
    """The server's `io.nats.jetstream.advisory.v1.max_deliver` (only the fields used here)."""

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


Judge = Callable[[Any, bytes, int, datetime], Awaitable[Verdict]]


async def _judge_build(conn: Any, data: bytes, deliveries: int, now: datetime) -> Verdict:
    command = decode(data, BuildRequested)
    bind_ids(project_id=command.project_id, build_id=command.build_id)
    return await judge_build(conn, command, deliveries, now)


async def _judge_deployment(conn: Any, data: bytes, deliveries: int, now: datetime) -> Verdict:
    command = decode(data, DeployRequested)
    bind_ids(project_id=command.project_id, deployment_id=command.deployment_id)
    return await judge_deployment(conn, command, deliveries, now)


@dataclass(frozen=True)
class WorkQueue:
    """A work-queue stream, its workers' durable consumer, and how to judge its commands."""

    stream: str
    consumer: str
    judge: Judge

    @property
    def advisory_subject(self) -> str:
        return max_deliveries_advisory_subject(self.stream, self.consumer)


BUILDS_QUEUE = WorkQueue(STREAM_BUILDS, CONSUMER_BUILD_WORKERS, _judge_build)
DEPLOYS_QUEUE = WorkQueue(STREAM_DEPLOYS, CONSUMER_DEPLOY_ENGINES, _judge_deployment)
WORK_QUEUES = (BUILDS_QUEUE, DEPLOYS_QUEUE)


class MaxDeliveriesWatcher:
    """Settles the commands of `queues` that JetStream gave up on, as advisories arrive."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        js: JetStreamContext,
        metrics: Metrics | None = None,
        *,
        queues: tuple[WorkQueue, ...] = WORK_QUEUES,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._js = js
        self._metrics = metrics
        self._queues = queues
        handlers = [(queue.advisory_subject, partial(self._on_advisory, queue)) for queue in queues]
        self._server = QueueGroupServer(nc, handlers, log_event="max_deliveries_watching")
        # Set once the server has the subscriptions: no advisory published later is missed.
        self.ready = self._server.ready
        self.run = self._server.run  # watch until cancelled

    @property
    def received(self) -> int:
        """Advisories this watcher received (the others of the queue group went elsewhere)."""
        return sum(sub.delivered for sub in self._server.subs)

    @property
    def busy(self) -> bool:
        """Advisories received but not yet handled."""
        return bool(self._server.handling) or any(sub.pending_msgs for sub in self._server.subs)

    async def _on_advisory(self, queue: WorkQueue, msg: Msg) -> None:
        """In a task of its own (`QueueGroupServer`): a slow one (retrying) does not hold up
        the next."""
        try:
            advisory = msgspec.json.decode(msg.data, type=MaxDeliveriesAdvisory)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("advisory_undecodable", subject=msg.subject, error=str(exc))
            self._count(queue, "undecodable")
            return
        await self._handle_with_retries(queue, advisory)

    async def _handle_with_retries(self, queue: WorkQueue, advisory: MaxDeliveriesAdvisory) -> None:
        ids = {"stream": advisory.stream, "stream_seq": advisory.stream_seq}
        try:
            async for attempt in retrying(
                attempts=RETRY_ATTEMPTS,
                first_delay_s=RETRY_FIRST_DELAY_S,
                max_delay_s=RETRY_MAX_DELAY_S,
                retry_on=(Exception,),
                log_event="abandoned_job_retry",
            ):
                with attempt:
                    outcome = await self.handle(queue, advisory)
        except Exception as exc:
            log.error("abandoned_job_unhandled", **ids, error=repr(exc))
            self._count(queue, "error")
        else:
            self._count(queue, outcome)

    async def handle(self, queue: WorkQueue, advisory: MaxDeliveriesAdvisory) -> str:
        """Settle one abandoned command; returns the outcome (a metrics label)."""
        if (advisory.stream, advisory.consumer) != (queue.stream, queue.consumer):
            log.warning("advisory_of_another_queue", stream=advisory.stream)
            return "ignored"
        try:
            stored = await self._js.get_msg(queue.stream, advisory.stream_seq)
        except NotFoundError:
            return "gone"  # acked late, or settled by another replica
        try:
            async with self._pool.acquire() as conn:
                verdict = await queue.judge(
                    conn, stored.data or b"", advisory.deliveries, datetime.now(UTC)
                )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("abandoned_command_undecodable", stream=queue.stream, error=str(exc))
            await self._delete(queue, advisory.stream_seq)
            return "undecodable"
        await publish_verdict(self._js, verdict)
        await self._delete(queue, advisory.stream_seq)
        log.warning(
            "abandoned_job_settled",
            stream=queue.stream,
            stream_seq=advisory.stream_seq,
            deliveries=advisory.deliveries,
            outcome=verdict.outcome,
            error=getattr(verdict.event, "error", None),
        )
        return verdict.outcome

    async def _delete(self, queue: WorkQueue, seq: int) -> None:
        with contextlib.suppress(NotFoundError):
            await self._js.delete_msg(queue.stream, seq)

    def _count(self, queue: WorkQueue, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.count_abandoned_job(queue.stream, outcome)
