"""`libs.jobs.consume` against a real NATS server of the test's own: outcomes become acks,
naks and terms, and the consumer rides out the server going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from structlog.testing import capture_logs

from launchdeck.contracts.subjects import max_deliveries_advisory_subject
from launchdeck.libs.jobs import ConsumerSpec, Delivery, Outcome, consume
from tests.libs.support import RestartableNats
from tests.polling import eventually

STREAM = "JOBSTEST"
SUBJECT = "test.jobs"
DURABLE = "test-workers"
# What a publish meets while the server restarts: no reply, or JetStream not serving yet.
TRANSIENT_PUBLISH_ERRORS = (TimeoutError, NoStreamResponseError, ServiceUnavailableError)


class Job(msgspec.Struct, frozen=True):
    n: int


SPEC = ConsumerSpec(
    stream=STREAM,
    durable=DURABLE,
    subject=SUBJECT,
    message_type=Job,
    ack_wait_s=30.0,
    max_deliver=3,
    retry_delay_s=0.1,
)


@pytest_asyncio.fixture(loop_scope="session")
async def job_js(own_nc: Client) -> JetStreamContext:
    """JetStream with a file-backed work-queue stream, like the platform's command streams."""
    js = own_nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=[SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
        )
    )
    return js


@dataclass
class Worker:
    """A handler that records every delivery and answers what `decide` says."""

    decide: Callable[[Job, Delivery], Awaitable[Outcome]] | None = None
    seen: list[tuple[int, int, bool]] = field(default_factory=list)  # n, attempt, last

    async def __call__(self, job: Job, delivery: Delivery) -> Outcome:
        self.seen.append((job.n, delivery.num_delivered, delivery.last_attempt))
        if self.decide is None:
            return Outcome.ACK
        return await self.decide(job, delivery)


@contextlib.asynccontextmanager
async def consuming(
    js: JetStreamContext, worker: Worker, spec: ConsumerSpec[Job] = SPEC
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consume(js, spec, worker))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises whatever else ended it


async def publish(js: JetStreamContext, n: int) -> None:
    await js.publish(SUBJECT, msgspec.json.encode(Job(n)))


async def settled(js: JetStreamContext) -> bool:
    """Nothing delivered and unacknowledged, nothing waiting for delivery."""
    info = await js.consumer_info(STREAM, DURABLE)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def first_message(sub: Subscription, timeout_s: float = 10) -> Msg:
    return await sub.next_msg(timeout=timeout_s)


async def test_each_command_is_handled_once_and_acked(job_js: JetStreamContext) -> None:
    """ACK: every command reaches the handler once, decoded, and leaves the work queue."""
    worker = Worker()
    for n in (1, 2, 3):
        await publish(job_js, n)
    async with consuming(job_js, worker):
        await eventually("three handled", lambda: len(worker.seen) == 3)
        await eventually("all acked", lambda: settled(job_js))
    assert worker.seen == [(1, 1, False), (2, 1, False), (3, 1, False)]
    info = await job_js.consumer_info(STREAM, DURABLE)
    assert info.num_redelivered == 0
    assert (await job_js.stream_info(STREAM)).state.messages == 0


@pytest.mark.parametrize("failure", ["retry", "raise"])
async def test_retry_and_a_crashing_handler_get_the_command_again(
    job_js: JetStreamContext, failure: str
) -> None:
    """RETRY (or an exception from the handler) naks: the same command comes back as the next
    attempt, and an ACK then removes it."""

    async def fail_first(job: Job, delivery: Delivery) -> Outcome:
        if delivery.num_delivered > 1:
            return Outcome.ACK
        if failure == "raise":
            raise RuntimeError("boom")
        return Outcome.RETRY

    worker = Worker(fail_first)
    await publish(job_js, 7)
    async with consuming(job_js, worker):
        await eventually("second attempt acked", lambda: len(worker.seen) == 2)
        await eventually("acked", lambda: settled(job_js))
    assert worker.seen == [(7, 1, False), (7, 2, False)]
    assert (await job_js.stream_info(STREAM)).state.messages == 0


async def test_retries_stop_at_max_deliver(own_nc: Client, job_js: JetStreamContext) -> None:
    """A command that always asks for a retry is delivered max_deliver times, the last one
    flagged as such, then JetStream gives up (MAX_DELIVERIES advisory) and stops delivering."""

    async def always_retry(job: Job, delivery: Delivery) -> Outcome:
        return Outcome.RETRY

    advisories = await own_nc.subscribe(max_deliveries_advisory_subject(STREAM, DURABLE))
    worker = Worker(always_retry)
    await publish(job_js, 1)
    async with consuming(job_js, worker):
        advisory = await first_message(advisories)
        assert msgspec.json.decode(advisory.data)["deliveries"] == 3
        await publish(job_js, 2)  # the next command still gets through
        await eventually("the next command", lambda: (2, 1, False) in worker.seen)
    assert worker.seen[:3] == [(1, 1, False), (1, 2, False), (1, 3, True)]
    assert [seen for seen in worker.seen if seen[0] == 1] == worker.seen[:3]


async def test_term_and_undecodable_commands_are_never_redelivered(
    own_nc: Client, job_js: JetStreamContext
) -> None:
    """TERM (from the handler, or for a command that does not decode, without calling the
    handler) ends the command at once: terminated advisories, no redelivery."""

    async def term(job: Job, delivery: Delivery) -> Outcome:
        return Outcome.TERM

    terminated = await own_nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{STREAM}.{DURABLE}"
    )
    worker = Worker(term)
    await job_js.publish(SUBJECT, b'{"n": "not a number"}')
    await publish(job_js, 5)
    async with consuming(job_js, worker):
        first = msgspec.json.decode((await first_message(terminated)).data)
        second = msgspec.json.decode((await first_message(terminated)).data)
        await eventually("settled", lambda: settled(job_js))
    assert [first["stream_seq"], second["stream_seq"]] == [1, 2]
    assert worker.seen == [(5, 1, False)]
    info = await job_js.consumer_info(STREAM, DURABLE)
    assert info.num_redelivered == 0


async def publish_when_back(js: JetStreamContext, n: int, timeout_s: float = 15) -> None:
    """Publish once the server takes it (JetStream may answer 503 for a moment after start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await js.publish(SUBJECT, msgspec.json.encode(Job(n)), timeout=1.0)
            return
        except TRANSIENT_PUBLISH_ERRORS:
            assert time.monotonic() < deadline, "the restarted server never took a publish"
            await asyncio.sleep(0.05)


async def test_consumer_keeps_running_across_a_server_restart(
    restartable_nats: RestartableNats, own_nc: Client, job_js: JetStreamContext
) -> None:
    """The server stops and starts again (same port and store): consume does not end, logs the
    outage once, and handles a command published after the restart."""
    worker = Worker()
    with capture_logs() as logs:
        async with consuming(job_js, worker) as task:
            await publish(job_js, 1)
            await eventually("before the restart", lambda: worker.seen == [(1, 1, False)])
            await restartable_nats.astop()
            await eventually("client sees the server gone", lambda: not own_nc.is_connected)
            await eventually(
                "consumer notices",
                lambda: any(e["event"] == "outage_began" for e in logs),
            )
            await restartable_nats.astart()
            await eventually("client reconnected", lambda: own_nc.is_connected, timeout_s=15)
            await publish_when_back(job_js, 2)
            await eventually("after the restart", lambda: len(worker.seen) == 2, timeout_s=15)
            await eventually("acked", lambda: settled(job_js))
            assert not task.done()
    assert worker.seen == [(1, 1, False), (2, 1, False)]
    outages = [e for e in logs if e.get("consumer") == DURABLE]
    assert [e["event"] for e in outages] == ["outage_began", "outage_ended"]
    assert outages[0]["log_level"] == "warning"


async def test_a_command_in_flight_during_a_restart_is_acked_once(
    restartable_nats: RestartableNats, own_nc: Client, job_js: JetStreamContext
) -> None:
    """A handler still running while the server restarts gets its ACK through afterwards: the
    command is neither redelivered nor left pending."""
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(job: Job, delivery: Delivery) -> Outcome:
        started.set()
        await finish.wait()
        return Outcome.ACK

    worker = Worker(slow)
    async with consuming(job_js, worker) as task:
        await publish(job_js, 1)
        await asyncio.wait_for(started.wait(), 10)
        await restartable_nats.astop()
        await eventually("client sees the server gone", lambda: not own_nc.is_connected)
        finish.set()  # the handler is done while the server is away
        await restartable_nats.astart()
        await eventually("client reconnected", lambda: own_nc.is_connected, timeout_s=15)
        await eventually("acked after the restart", lambda: settled(job_js), timeout_s=15)
        assert not task.done()
    assert worker.seen == [(1, 1, False)]
    info = await job_js.consumer_info(STREAM, DURABLE)
    assert info.num_redelivered == 0
    assert (await job_js.stream_info(STREAM)).state.messages == 0


async def test_a_deleted_consumer_is_created_again(job_js: JetStreamContext) -> None:
    """The durable consumer disappearing under a running consume (the server answers 503 to
    its pulls) is re-created, and commands flow again."""
    worker = Worker()
    async with consuming(job_js, worker) as task:
        await publish(job_js, 1)
        await eventually("first", lambda: len(worker.seen) == 1)
        await job_js.delete_consumer(STREAM, DURABLE)
        await publish(job_js, 2)
        await eventually("after the consumer came back", lambda: len(worker.seen) == 2)
        assert not task.done()
    assert worker.seen == [(1, 1, False), (2, 1, False)]


async def test_a_closed_connection_ends_consume(own_nc: Client, job_js: JetStreamContext) -> None:
    """Closing the connection for good is the one thing consume does not ride out."""
    worker = Worker()
    task = asyncio.create_task(consume(job_js, SPEC, worker))
    await publish(job_js, 1)
    await eventually("running", lambda: len(worker.seen) == 1)
    await own_nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await asyncio.wait_for(task, 10)


# The watchdog, short enough for a test; AckWait stays 30 s, so only the watchdog can bring a
# stalled command back within the tests' waits (heartbeats keep it alive otherwise).
WATCHED = dataclasses.replace(SPEC, stall_timeout_s=0.5)


async def test_a_stalled_handler_is_cancelled_and_its_command_redelivered(
    job_js: JetStreamContext,
) -> None:
    """A handler that waits forever without progress: after stall_timeout_s it is cancelled,
    job_stalled says why, and the command is nak'ed (not acked) and comes back as attempt 2."""
    cancelled: list[float | None] = []

    async def stall_first(job: Job, delivery: Delivery) -> Outcome:
        if delivery.num_delivered > 1:
            return Outcome.ACK
        try:
            await asyncio.Event().wait()  # stuck: no progress, ever
        except asyncio.CancelledError:
            cancelled.append(delivery.stalled_s)
            raise
        return Outcome.ACK

    worker = Worker(stall_first)
    with capture_logs() as logs:
        async with consuming(job_js, worker, WATCHED):
            await publish(job_js, 1)
            await eventually("redelivered", lambda: len(worker.seen) == 2, timeout_s=10)
            await eventually("acked", lambda: settled(job_js))
    assert worker.seen == [(1, 1, False), (1, 2, False)]
    (stalled_s,) = cancelled
    assert stalled_s is not None
    assert stalled_s >= 0.5
    (stalled,) = [e for e in logs if e["event"] == "job_stalled"]
    assert stalled["log_level"] == "error"
    assert stalled["attempt"] == 1
    assert "no progress for" in stalled["reason"]


async def test_a_handler_that_reports_progress_is_left_alone(job_js: JetStreamContext) -> None:
    """Progress reports, and time spent inside working() (a wait with its own limit), keep a
    handler that runs well past stall_timeout_s from being taken for stalled."""

    async def slow_but_busy(job: Job, delivery: Delivery) -> Outcome:
        for _ in range(6):
            await asyncio.sleep(0.2)  # the work itself
            delivery.progress()
        with delivery.working():
            await asyncio.sleep(1.0)  # a quiet step with a time limit of its own
        return Outcome.ACK

    worker = Worker(slow_but_busy)
    with capture_logs() as logs:
        async with consuming(job_js, worker, WATCHED):
            await publish(job_js, 1)
            await eventually("handled", lambda: len(worker.seen) == 1)
            await eventually("acked", lambda: settled(job_js))
    assert worker.seen == [(1, 1, False)]
    assert not [e for e in logs if e["event"] == "job_stalled"]
    info = await job_js.consumer_info(STREAM, DURABLE)
    assert info.num_redelivered == 0
