"""The events consumer: the transport half (NATS) of applying status events.

A durable pull consumer on `EVENTS` (every `ld.events.>` subject, explicit ack) decodes each event
by its subject prefix, hands it to `apply_event` (one transaction with the inbox row, keyed by the
message's `Nats-Msg-Id`, so a recreated stream whose sequences start again is still applied),
then acks.
Events this service does not handle yet are acked and skipped. When a build has finished, its
log is persisted in the background after the commit (best effort: errors are logged).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.messages import (
    BuildStatusChanged,
    DeploymentStatusChanged,
    RunStatusChanged,
)
from launchdeck.contracts.subjects import (
    CONSUMER_CONTROL_API_EVENTS,
    STREAM_EVENTS,
    SUBJECT_BUILD_EVENTS_PREFIX,
    SUBJECT_DEPLOYMENT_EVENTS_PREFIX,
    SUBJECT_EVENTS_ALL,
    SUBJECT_GENERATION_EVENTS_PREFIX,
    SUBJECT_RUN_EVENTS_PREFIX,
)
from launchdeck.control_api.domain.events import AnyEvent, EventOrigin, apply_event
from launchdeck.control_api.logs.archive import persist_build_log
from launchdeck.control_api.metrics import Metrics
from launchdeck.libs.db import POSTGRES_AWAY
from launchdeck.libs.jobs import ConsumerSpec, Delivery, Outcome, consume
from launchdeck.libs.logging import bind_ids, get_logger
from launchdeck.libs.outage import Outage

log = get_logger(__name__)

EVENTS_SPEC: ConsumerSpec[msgspec.Raw] = ConsumerSpec(
    stream=STREAM_EVENTS,
    durable=CONSUMER_CONTROL_API_EVENTS,
    subject=SUBJECT_EVENTS_ALL,
    message_type=msgspec.Raw,  # decoded per subject in `decode_event`
    ack_wait_s=30.0,
    max_deliver=-1,  # state must not be lost: retry until Postgres is back
    retry_delay_s=1.0,
)

PERSIST_LOG_TIMEOUT_S = 60.0


def decode_event(subject: str, data: bytes) -> AnyEvent | None:
    """The event on `subject`, or None for subjects this service does not consume (yet).

    Raises msgspec.ValidationError / DecodeError for a malformed event.
    """
    if subject.startswith(SUBJECT_GENERATION_EVENTS_PREFIX + "."):
        # The generator's progress, for WebSocket viewers (core NATS): the job's row is kept
        # by the RPC that settles its items, so there is nothing to apply — acked, skipped.
        return None
    if subject.startswith(SUBJECT_BUILD_EVENTS_PREFIX + "."):
        return msgspec.json.decode(data, type=BuildStatusChanged)
    if subject.startswith(SUBJECT_DEPLOYMENT_EVENTS_PREFIX + "."):
        return msgspec.json.decode(data, type=DeploymentStatusChanged)
    if subject.startswith(SUBJECT_RUN_EVENTS_PREFIX + "."):
        return msgspec.json.decode(data, type=RunStatusChanged)
    return None


def _project_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # no project we can name: every project's


class EventsConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        metrics: Metrics | None = None,
        *,
        on_change: Callable[[uuid.UUID | None], None] | None = None,
    ) -> None:
        self._pool = pool
        # Told the project of each event once applied (committed): the builds-list page cache.
        self._on_change = on_change
        self._js = js
        self._metrics = metrics
        self._follow_ups: set[asyncio.Task[None]] = set()
        self._postgres = Outage("events consumer: PostgreSQL")

    async def run(self) -> None:
        """Consume until cancelled (then wait for log persistence already under way)."""
        try:
            await consume(self._js, EVENTS_SPEC, self.handle, concurrency=1)
        finally:
            for task in self._follow_ups:
                task.cancel()
            await asyncio.gather(*self._follow_ups, return_exceptions=True)

    async def handle(self, raw: msgspec.Raw, delivery: Delivery) -> Outcome:
        try:
            event = decode_event(delivery.subject, bytes(raw))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.error("event_undecodable", subject=delivery.subject, error=str(exc))
            self._count("undecodable")
            return Outcome.TERM
        if event is None:
            self._count("skipped")
            return Outcome.ACK
        # Each delivery runs in its own task, so these ids stay on this event's log lines.
        if isinstance(event, BuildStatusChanged):
            bind_ids(project_id=event.project_id, build_id=event.build_id)
        elif isinstance(event, RunStatusChanged):
            bind_ids(project_id=event.project_id, run_id=event.run_id)
        else:
            bind_ids(project_id=event.project_id, deployment_id=event.deployment_id)
        origin = EventOrigin(
            stream=STREAM_EVENTS,
            stream_seq=delivery.stream_seq,
            msg_id=delivery.msg_id,
            stored_at=delivery.stored_at,
        )
        try:
            outcome = await apply_event(self._pool, origin, event)
            if self._on_change is not None and outcome.applied:
                self._on_change(_project_id(event.project_id))
        except POSTGRES_AWAY as exc:
            # Redelivered (max_deliver is unlimited) until Postgres is back: one warning per
            # outage, not an error with a traceback per delivery.
            self._postgres.failed(exc)
            return Outcome.RETRY
        self._postgres.over()
        self._count(outcome.result)
        if outcome.finished_build_id is not None:
            self._persist_log(outcome.finished_build_id)
        return Outcome.ACK

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.count_event(result)

    def _persist_log(self, build_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._persist_log_now(build_id))
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def _persist_log_now(self, build_id: uuid.UUID) -> None:
        try:
            await asyncio.wait_for(
                persist_build_log(self._pool, self._js, str(build_id)), PERSIST_LOG_TIMEOUT_S
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("build_log_persist_failed", build_id=str(build_id), error=repr(exc))
