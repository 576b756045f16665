"""Durable pull consumers for long jobs: the transport half of a worker.

A handler is a plain async function taking the decoded command and a `Delivery`, returning an
`Outcome`; this module maps outcomes to JetStream acks one-to-one (ack / nak with delay / term),
keeps the message alive with `in_progress()` heartbeats every AckWait/3 while the handler runs,
and on shutdown hands in-flight work back (nak) so another worker takes it at once.

Heartbeats alone would keep a stuck handler's job "running" forever, so a consumer can have a
watchdog (`ConsumerSpec.stall_timeout_s`): a handler that reports no progress for that long has its
attempt failed — its task is cancelled, the message nak'ed for redelivery (never acked), and
`job_stalled` logged. Progress is what the handler says it is: `Delivery.progress()` (a log batch
stored, a step done), and any time spent inside `with delivery.working():` (a wait with a time
limit of its own, such as a build command under the build's timeout).

NATS trouble (the client reconnecting, a server restarting, a consumer missing for a while) does
not end `consume`: it waits for the connection, backs off on error replies, re-creates the
durable consumer when the server answers that nobody serves it, and carries on. Only a connection
closed for good ends it (`nats.errors.ConnectionClosedError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from launchdeck.contracts.codec import decode
from launchdeck.libs.cancellation import pause
from launchdeck.libs.jetstream import client_of, wait_connected
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage

log = get_logger(__name__)

T = TypeVar("T")

MSG_ID_HEADER = "Nats-Msg-Id"

FETCH_TIMEOUT_S = 5.0
# How long a cancelled pull gets to end before it is left to finish on its own.
CANCEL_WAIT_S = 0.5
# How often a pending pull checks that the connection is still up (a local flag, no traffic).
CONNECTION_CHECK_S = 0.25
# How long (at most: AckWait) an ack is retried while connected to a server that does not take
# it: JetStream electing a leader takes seconds; past that the consumer is gone, and whichever
# consumer replaces it gets the command again anyway.
SETTLE_RETRY_S = 10.0
# How long a handler cancelled by the watchdog gets to wind down (say why in its log, clean up)
# before its message is nak'ed anyway and the task left to finish on its own.
STALLED_CANCEL_GRACE_S = 10.0

# What nats-py (2.16) raises while the connection is down or the server is coming back: no reply
# in time (TimeoutError: also an idle fetch), nobody subscribed yet (NoRespondersError; a 503
# status, as a pull on a consumer the server does not have gets: ServiceUnavailableError), the
# reconnect buffer full (OutboundBufferLimitError), a request made mid-reconnect or mid-drain.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    ServiceUnavailableError,
)


class Outcome(enum.Enum):
    ACK = "ack"  # done (succeeded or failed for good): the result is durable
    RETRY = "retry"  # transient failure: redeliver after a delay
    TERM = "term"  # never redeliver (malformed or obsolete command)


class ProgressWatch:
    """When a handler last got somewhere, as the watchdog sees it."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.working = 0  # `Delivery.working()` blocks currently open
        self.stalled_s: float | None = None  # set when the watchdog stops the attempt

    def report(self) -> None:
        self.last = time.monotonic()

    def idle_s(self) -> float:
        """Seconds without progress (0 while inside `working()`)."""
        return 0.0 if self.working else time.monotonic() - self.last


@dataclass(frozen=True)
class Delivery:
    """What the transport knows about this delivery of a command, and the handler's channel
    back to the watchdog (`progress`, `working`)."""

    num_delivered: int
    max_deliver: int
    subject: str
    stream_seq: int
    watch: ProgressWatch = field(default_factory=ProgressWatch, compare=False, repr=False)
    # What identifies the message beyond its sequence, which restarts at 1 when the stream is
    # recreated (after NATS lost its store): the publisher's `Nats-Msg-Id`, if it set one, and
    # when the stream stored it (the same on every redelivery, different in a new stream).
    msg_id: str | None = None
    stored_at: datetime | None = None

    @property
    def last_attempt(self) -> bool:
        return self.max_deliver > 0 and self.num_delivered >= self.max_deliver

    def progress(self) -> None:
        """Tell the watchdog this attempt got somewhere (a log batch or an event stored, a step
        done), so it is not taken for stalled."""
        self.watch.report()

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Around a wait that has a time limit of its own (a build command under the build's
        timeout): however long and silent, it is not a stall."""
        self.watch.working += 1
        try:
            yield
        finally:
            self.watch.working -= 1
            self.watch.report()

    @property
    def stalled_s(self) -> float | None:
        """Set when the watchdog cancelled this attempt: how long it had made no progress (a
        handler tells a stall from a shutdown by it)."""
        return self.watch.stalled_s


Handler = Callable[[T, Delivery], Awaitable[Outcome]]


@dataclass(frozen=True)
class ConsumerSpec(Generic[T]):
    stream: str
    durable: str
    subject: str
    message_type: type[T]
    ack_wait_s: float = 30.0
    max_deliver: int = 3
    retry_delay_s: float = 2.0
    # The delay grows with each delivery up to this cap: after a long outage of a dependency
    # (Postgres for the events consumer, whose deliveries are unlimited) work resumes within
    # this long of its return instead of minutes later.
    max_retry_delay_s: float = 30.0
    # The watchdog: an attempt without progress for this long is cancelled and redelivered.
    # None: no watchdog (the handler must bound every wait itself).
    stall_timeout_s: float | None = None


async def _heartbeat(msg: Msg, every_s: float) -> None:
    while True:
        await pause(every_s)
        with contextlib.suppress(Exception):
            await msg.in_progress()


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec[T]) -> None:
    config = ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=spec.subject,
    )
    await js.add_consumer(spec.stream, config)


async def handle_one(msg: Msg, spec: ConsumerSpec[T], handler: Handler[T]) -> Outcome:
    """Decode, run the handler under heartbeats, and settle the message."""
    meta = msg.metadata
    delivery = Delivery(
        num_delivered=meta.num_delivered,
        max_deliver=spec.max_deliver,
        subject=msg.subject,
        stream_seq=meta.sequence.stream,
        msg_id=(msg.headers or {}).get(MSG_ID_HEADER) or None,
        stored_at=meta.timestamp,
    )
    try:
        command = decode(msg.data, spec.message_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.error("command_undecodable", subject=msg.subject, error=str(exc))
        await settle(msg, Outcome.TERM, spec, delivery)
        return Outcome.TERM
    beat = asyncio.create_task(_heartbeat(msg, spec.ack_wait_s / 3))
    work = asyncio.ensure_future(handler(command, delivery))
    try:
        try:
            await _watch(work, delivery, spec.stall_timeout_s)
        except asyncio.CancelledError:
            # Shutdown: let the handler wind down, then hand the work back so another worker
            # (or we, restarted) takes it now.
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        outcome = _outcome_of(work, delivery)
        # Still heartbeating: a settlement retried across a NATS outage keeps the message ours.
        await settle(msg, outcome, spec, delivery)
    finally:
        beat.cancel()
    return outcome


async def _watch(work: asyncio.Future[Outcome], delivery: Delivery, stall_s: float | None) -> None:
    """Wait for the handler; with a watchdog, cancel it once it has made no progress for
    `stall_s`, and stop waiting if it ignores that for `STALLED_CANCEL_GRACE_S`."""
    watch = delivery.watch
    while stall_s is not None:
        idle = watch.idle_s()
        if idle < stall_s:
            # Wake when the limit would be reached; re-checked, as progress may come meanwhile.
            done, _ = await asyncio.wait({work}, timeout=stall_s - idle)
            if done:
                return
        else:
            watch.stalled_s = idle
            log.error(
                "job_stalled",
                subject=delivery.subject,
                stream_seq=delivery.stream_seq,
                attempt=delivery.num_delivered,
                no_progress_s=round(idle, 1),
                reason=f"no progress for {idle:.0f}s: the attempt is cancelled and redelivered",
            )
            work.cancel()
            done, _ = await asyncio.wait({work}, timeout=STALLED_CANCEL_GRACE_S)
            if not done:
                log.error("job_stalled_ignores_cancel", stream_seq=delivery.stream_seq)
            return
    await asyncio.wait({work})


def _outcome_of(work: asyncio.Future[Outcome], delivery: Delivery) -> Outcome:
    """The handler's outcome; RETRY if it crashed, and always RETRY (redelivery, never an ack)
    when the watchdog stopped it, whatever it returned."""
    if delivery.stalled_s is not None:
        if work.done() and not work.cancelled():
            work.exception()  # retrieved: whatever it ended with, the attempt is over
        return Outcome.RETRY
    if work.cancelled():  # cancelled by something other than the watchdog or a shutdown
        return Outcome.RETRY
    error = work.exception()
    if error is not None:
        log.error("handler_crashed", subject=delivery.subject, exc_info=error)
        return Outcome.RETRY
    return work.result()


async def settle(msg: Msg, outcome: Outcome, spec: ConsumerSpec[T], delivery: Delivery) -> None:
    """Ack / nak with delay / term `msg`.

    Retried across a NATS outage: nak and term are queued by the client while it reconnects;
    an ack waits for the server's confirmation, so it is retried once the connection is back.
    Gives up (the server then redelivers) when the connection closes, on an unexpected error, or
    after `SETTLE_RETRY_S` of failures while connected.
    """
    nc = _client_of_msg(msg)
    outage = Outage("nats", stream_seq=str(delivery.stream_seq), subject=delivery.subject)
    give_up_at: float | None = None  # set by the first failure while connected
    while True:
        try:
            if outcome is Outcome.ACK:
                await msg.ack_sync()
            elif outcome is Outcome.RETRY:
                await msg.nak(
                    delay=min(spec.retry_delay_s * delivery.num_delivered, spec.max_retry_delay_s)
                )
            else:
                await msg.term()
        except TRANSIENT_ERRORS as exc:
            if not nc.is_connected:
                outage.failed(exc)
                try:
                    await wait_connected(nc)
                except nats.errors.ConnectionClosedError:
                    break
                continue
            now = time.monotonic()
            give_up_at = give_up_at or now + min(spec.ack_wait_s, SETTLE_RETRY_S)
            if now >= give_up_at:
                break
            await outage.backoff(exc)
        except Exception as exc:  # closed connection, or a bug: the server redelivers
            log.error("settle_failed", outcome=outcome.value, error=repr(exc))
            return
        else:
            outage.over()
            return
    log.error("settle_gave_up", outcome=outcome.value, stream_seq=delivery.stream_seq)


def _client_of_msg(msg: Msg) -> Client:
    nc: Client = msg._client
    return nc


async def consume(
    js: JetStreamContext,
    spec: ConsumerSpec[T],
    handler: Handler[T],
    *,
    concurrency: int = 1,
) -> None:
    """Pull and handle commands until cancelled, `concurrency` at a time.

    Rides out NATS outages (see the module docstring); raises `ConnectionClosedError` when the
    connection is closed for good, and `NotFoundError` when the stream itself is gone (the
    process should restart and provision it).
    """
    nc = client_of(js)
    outage = Outage("nats", consumer=spec.durable)
    await _ensure_consumer_retrying(js, spec, nc, outage)
    # A core subscription on an inbox: nats-py subscribes it again after every reconnect.
    sub = await js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[Outcome]] = set()
    try:
        while True:
            await slots.acquire()
            try:
                msgs = await _fetch_one(js, spec, nc, sub, outage)
            except BaseException:
                slots.release()
                raise
            if not msgs:
                slots.release()
                continue
            for msg in msgs:
                task = asyncio.create_task(handle_one(msg, spec, handler))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: slots.release())
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _fetch_one(
    js: JetStreamContext,
    spec: ConsumerSpec[T],
    nc: Client,
    sub: JetStreamContext.PullSubscription,
    outage: Outage,
) -> list[Msg]:
    """One pull: the message, or nothing after an idle wait or a failure (already waited out)."""
    if not nc.is_connected:
        # No pull while reconnecting: the client would queue it and send it stale later.
        outage.failed("disconnected")
        await wait_connected(nc)
        return []
    try:
        msgs = await _pull(sub, nc)
    except TimeoutError as exc:
        if nc.is_connected:
            outage.over()  # an idle pull answered in time: the server is there
        else:
            outage.failed(exc)
        return []
    except TRANSIENT_ERRORS as exc:
        # 503 / no responders: JetStream not ready yet, or the consumer is gone (a server that
        # restarted without it): back off, then make sure it exists.
        await outage.backoff(exc)
        if nc.is_connected:
            await _ensure_consumer_retrying(js, spec, nc, outage)
        return []
    if msgs is None:
        outage.failed("disconnected")
        return []
    outage.over()
    return msgs


async def _pull(sub: JetStreamContext.PullSubscription, nc: Client) -> list[Msg] | None:
    """`sub.fetch(1)`, or None as soon as the connection drops: the pull request died with the
    server's side of the connection, so waiting out its timeout would only delay resuming."""
    fetch = asyncio.ensure_future(sub.fetch(1, timeout=FETCH_TIMEOUT_S))
    try:
        while True:
            done, _ = await asyncio.wait({fetch}, timeout=CONNECTION_CHECK_S)
            if done:
                return fetch.result()
            if not nc.is_connected:
                return None
    finally:
        if not fetch.done():
            fetch.cancel()
            # nats-py's fetch may swallow a cancel that lands while it publishes its request,
            # then wait out its whole timeout: give it a moment, never the whole timeout
            # (shutdown would wait for it), and let it end on its own otherwise.
            await asyncio.wait({fetch}, timeout=CANCEL_WAIT_S)
            fetch.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume an abandoned task's outcome, so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _ensure_consumer_retrying(
    js: JetStreamContext, spec: ConsumerSpec[T], nc: Client, outage: Outage
) -> None:
    while True:
        await wait_connected(nc)
        try:
            await ensure_consumer(js, spec)
        except NotFoundError:
            log.error("consumer_stream_missing", stream=spec.stream, consumer=spec.durable)
            raise
        except TRANSIENT_ERRORS as exc:
            await outage.backoff(exc)
        else:
            return
