"""Jobs no worker finished: when JetStream stops redelivering a build or deploy command (max
deliveries), the control-api marks the build/deployment failed through an ordinary event, ends
the build's log for live viewers, and deletes the dead command from its work queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import msgspec
import nats.errors
import pytest_asyncio
from aiohttp import WSCloseCode
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildRequested, DeployRequested, LogLine
from launchdeck.contracts.subjects import (
    CONSUMER_BUILD_WORKERS,
    CONSUMER_DEPLOY_ENGINES,
    STREAM_BUILDS,
    STREAM_DEPLOYS,
    STREAM_LOGS,
    SUBJECT_BUILD_JOBS,
    SUBJECT_DEPLOY_JOBS,
    build_log_subject,
    max_deliveries_advisory_subject,
)
from launchdeck.control_api.consumers.advisories import (
    BUILDS_QUEUE,
    MaxDeliveriesWatcher,
    WorkQueue,
)
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.domain.abandoned_jobs import judge_build, judge_deployment
from launchdeck.control_api.logs.eof import ensure_log_eof
from launchdeck.control_api.logs.stream import LogEnd, iter_log
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store.records import Build, Deployment
from launchdeck.libs.jetstream import connect
from tests.control_api.helpers import (
    activate,
    apply,
    artifact,
    build_event,
    get_build,
    get_deployment,
    new_build,
    new_project,
    succeed,
)
from tests.control_api.log_support import (
    ADMIN,
    AUTH,
    DEADLINE_S,
    LogPublisher,
    receive_frame,
    view_until_closed,
)
from tests.control_api.support import Api
from tests.polling import eventually


def now() -> datetime:
    return datetime.now(UTC)


def build_command(build: Build) -> BuildRequested:
    return BuildRequested(
        build_id=str(build.id),
        project_id=str(build.project_id),
        project_name="abandoned",
        number=build.number,
        repo_url="https://git.invalid/abandoned",
        ref=build.ref,
    )


def deploy_command(deployment: Deployment, build: Build) -> DeployRequested:
    return DeployRequested(
        deployment_id=str(deployment.id),
        project_id=str(deployment.project_id),
        project_name="abandoned",
        build_id=str(deployment.build_id),
        environment=deployment.environment,
        artifact=artifact(build),
    )


def advisory(stream: str, consumer: str, stream_seq: int, deliveries: int = 3) -> bytes:
    """The server's max-deliveries advisory, as nats-server publishes it."""
    return json.dumps(
        {
            "type": "io.nats.jetstream.advisory.v1.max_deliver",
            "id": uuid.uuid4().hex,
            "timestamp": now().isoformat(),
            "stream": stream,
            "consumer": consumer,
            "stream_seq": stream_seq,
            "deliveries": deliveries,
        }
    ).encode()


async def is_deleted(js: JetStreamContext, stream: str, seq: int) -> bool:
    try:
        await js.get_msg(stream, seq)
    except NotFoundError:
        return True
    return False


async def log_end(js: JetStreamContext, build_id: str) -> LogEnd | None:
    """How the build's log ends as it stands in the stream (None: no eof yet)."""
    async with aclosing(iter_log(js, build_id, follow=False)) as items:
        async for item in items:
            if isinstance(item, LogEnd):
                return item
    return None


@asynccontextmanager
async def running(*tasks: Any) -> AsyncIterator[None]:
    """Run the given coroutines (a consumer, a watcher) in the background for the block."""
    started = [asyncio.create_task(t) for t in tasks]
    try:
        yield
    finally:
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def events_applied(pool: asyncpg.Pool, js: JetStreamContext) -> AsyncIterator[None]:
    """The events consumer, so published events reach Postgres."""
    async with running(EventsConsumer(pool, js).run()):
        yield


# --- the verdict (Postgres only) -------------------------------------------------------------


async def test_unfinished_build_is_judged_failed_and_a_finished_one_only_gets_its_eof(
    pool: asyncpg.Pool,
) -> None:
    """A running build gets a `failed` event (attempt = deliveries, a readable error) and an
    eof `failed`; a succeeded build gets no event, only its eof; an unknown build nothing."""
    project = await new_project(pool)
    running_build = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(running_build, "building", attempt=2, at=now()))
    async with pool.acquire() as conn:
        verdict = await judge_build(conn, build_command(running_build), 3, now())
    assert verdict.outcome == "marked_failed"
    assert verdict.event is not None
    assert verdict.event.status == "failed"
    assert verdict.event.attempt == 3
    assert verdict.event.error == (
        "the build-worker stopped responding after 3 attempts: no result was reported"
    )
    assert verdict.log_eof is not None
    assert (verdict.log_eof.status, verdict.log_eof.attempt) == ("failed", 3)

    done = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(done, "succeeded", artifact=artifact(done), at=now()))
    async with pool.acquire() as conn:
        verdict = await judge_build(conn, build_command(done), 3, now())
        unknown = await judge_build(
            conn, build_command(msgspec.structs.replace(done, id=uuid.uuid4())), 3, now()
        )
    assert verdict.event is None
    assert verdict.outcome == "already_finished"
    assert verdict.log_eof is not None
    assert verdict.log_eof.status == "succeeded"
    assert (unknown.event, unknown.log_eof, unknown.outcome) == (None, None, "unknown")


async def test_pending_deployment_is_judged_failed_and_an_active_one_left_alone(
    pool: asyncpg.Pool,
) -> None:
    """A pending deployment gets a `failed` event naming the deploy-engine; an active one none."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    deployment = await succeed(pool, build)
    async with pool.acquire() as conn:
        verdict = await judge_deployment(conn, deploy_command(deployment, build), 2, now())
    assert verdict.event is not None
    assert verdict.event.status == "failed"
    assert verdict.event.error == (
        "the deploy-engine stopped responding after 2 attempts: no result was reported"
    )
    assert verdict.log_eof is None

    active = await activate(pool, deployment, now())
    async with pool.acquire() as conn:
        verdict = await judge_deployment(conn, deploy_command(active, build), 2, now())
    assert (verdict.event, verdict.outcome) == (None, "already_finished")


# --- the log's eof ---------------------------------------------------------------------------


async def test_eof_is_added_once_and_never_after_the_workers_own(js: JetStreamContext) -> None:
    """A log without eof (or an empty one) gets exactly one; a log the worker ended gets none."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(3)
    assert await ensure_log_eof(js, build_id, "failed", attempt=3)
    assert not await ensure_log_eof(js, build_id, "failed", attempt=3)
    assert await log_end(js, build_id) == LogEnd("failed")
    lines = [i async for i in iter_log(js, build_id, follow=False) if isinstance(i, LogLine)]
    assert [line.seq for line in lines] == [1, 2, 3]

    empty = str(uuid.uuid4())
    assert await ensure_log_eof(js, empty, "cancelled")
    assert await log_end(js, empty) == LogEnd("cancelled")

    ended = str(uuid.uuid4())
    worker = LogPublisher(js, ended)
    await worker.lines(2)
    await worker.finish("succeeded")
    before = await js.get_last_msg(STREAM_LOGS, build_log_subject(ended))
    assert not await ensure_log_eof(js, ended, "failed")
    after = await js.get_last_msg(STREAM_LOGS, build_log_subject(ended))
    assert after.seq == before.seq


class WorkerEndsMeanwhile:
    """JetStream as `ensure_log_eof` sees it, except that the worker's own eof batch lands
    right after the log's last batch was read: the race the sequence check is there for."""

    def __init__(self, js: JetStreamContext, worker: LogPublisher) -> None:
        self._js = js
        self._worker = worker
        self._raced = False

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        msg = await self._js.get_last_msg(stream, subject)
        if not self._raced:
            self._raced = True
            await self._worker.finish("succeeded", lines=1)
        return msg

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        return await self._js.publish(*args, **kwargs)


async def test_eof_is_not_added_after_a_worker_eof_that_raced_it(js: JetStreamContext) -> None:
    """The worker ends the log between our look and our publish: ours is refused by the server,
    and the log keeps the worker's last line and status."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(2)
    racing = cast(JetStreamContext, WorkerEndsMeanwhile(js, worker))
    assert not await ensure_log_eof(racing, build_id, "failed")
    items = [i async for i in iter_log(js, build_id, follow=False)]
    assert [i.seq for i in items if isinstance(i, LogLine)] == [1, 2, 3]
    assert items[-1] == LogEnd("succeeded")
    info = await js.stream_info(STREAM_LOGS, subjects_filter=build_log_subject(build_id))
    assert info.state.subjects == {build_log_subject(build_id): 2}


# --- over NATS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateQueue:
    queue: WorkQueue
    subject: str


@pytest_asyncio.fixture(loop_scope="session")
async def private_build_queue(js: JetStreamContext) -> AsyncIterator[PrivateQueue]:
    """A work-queue stream of its own with the build-workers' consumer, redelivering after 1 s
    at most twice, so the server gives up on a command quickly."""
    name = f"TEST_BUILDS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"test.{name.lower()}.jobs"
    await js.add_stream(
        StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE)
    )
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name=CONSUMER_BUILD_WORKERS,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=1.0,
            max_deliver=2,
        ),
    )
    try:
        yield PrivateQueue(WorkQueue(name, CONSUMER_BUILD_WORKERS, BUILDS_QUEUE.judge), subject)
    finally:
        await js.delete_stream(name)


async def test_build_whose_worker_dies_on_its_last_attempt_ends_failed(
    api: Api,
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    private_build_queue: PrivateQueue,
    events_applied: None,
) -> None:
    """A real consumer delivers the command twice and it is never acked: the server's advisory
    makes the build `failed` with a readable error, live log viewers get their lines then `end`,
    project viewers see the event, and the command is gone from the work queue."""
    queue = private_build_queue.queue
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    build_id = str(build.id)
    await apply(pool, build_event(build, "cloning", step="clone", at=now()))
    worker_log = LogPublisher(js, build_id)
    await worker_log.lines(5)
    command = encode(build_command(build))
    seq = (await js.publish(private_build_queue.subject, command)).seq

    log_viewer = await api.client.ws_connect(f"/api/v1/builds/{build_id}/logs/ws", headers=AUTH)
    events_viewer = await api.client.ws_connect(f"/api/v1/ws?token={ADMIN}")
    channel = f"project:{project.id}:events"
    await events_viewer.send_str(json.dumps({"type": "subscribe", "channel": channel}))
    assert await receive_frame(events_viewer) == {"type": "subscribed", "channel": channel}

    metrics = Metrics()
    watcher = MaxDeliveriesWatcher(pool, nc, js, metrics, queues=(queue,))
    async with running(watcher.run()):
        # The "worker": takes the command and dies each time (never acks). Its pull requests
        # are also what makes the server notice, on the third, that deliveries are used up.
        pulls = await js.pull_subscribe_bind(queue.consumer, stream=queue.stream)
        deliveries = 0
        async with asyncio.timeout(DEADLINE_S):
            while not await is_deleted(js, queue.stream, seq):
                with suppress(nats.errors.TimeoutError):
                    deliveries += len(await pulls.fetch(1, timeout=0.5))
        await pulls.unsubscribe()

        viewed = await view_until_closed(log_viewer)
        assert viewed.seqs == [1, 2, 3, 4, 5]
        assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "failed"}]
        assert viewed.close_code == WSCloseCode.OK
        event = await receive_frame(events_viewer)
        assert event["kind"] == "build"
        assert (event["event"]["build_id"], event["event"]["status"]) == (build_id, "failed")

        async def recorded() -> bool:
            return (await get_build(pool, build.id)).status == "failed"

        await eventually("the failure to be applied", recorded)
    await events_viewer.close()

    assert deliveries == 2
    failed = await get_build(pool, build.id)
    assert failed.error == (
        "the build-worker stopped responding after 2 attempts: no result was reported"
    )
    assert failed.step == "clone"  # where it was when it stopped
    assert failed.attempt == 2
    assert failed.finished_at is not None
    assert (await js.stream_info(queue.stream)).state.messages == 0
    assert metrics.abandoned_jobs == {(queue.stream, "marked_failed"): 1}


async def test_deployments_abandoned_are_failed_once_across_replicas(
    pool: asyncpg.Pool, nats_url: str, nc: Client, js: JetStreamContext, events_applied: None
) -> None:
    """Advisories (the server's payload) for three deploy commands, two control-api replicas in
    the queue group: each advisory is handled once; the deployments fail, the one that was
    replacing an active deployment leaves that one active; the commands are deleted. An advisory
    whose command is already gone (acked late) changes nothing."""
    replicas = [await connect(nats_url, name=f"launchdeck-tests-replica-{i}") for i in (1, 2)]
    metrics = [Metrics(), Metrics()]
    watchers = [
        MaxDeliveriesWatcher(pool, r, r.jetstream(), m)
        for r, m in zip(replicas, metrics, strict=True)
    ]
    try:
        project = await new_project(pool)
        first = await new_build(pool, project)
        live = await activate(pool, await succeed(pool, first), now() - timedelta(minutes=5))
        second = await new_build(pool, project)
        pending = [(await succeed(pool, second), second)]
        for _ in range(2):
            build = await new_build(pool, await new_project(pool))
            pending.append((await succeed(pool, build), build))
        late = await new_build(pool, await new_project(pool))
        late_deployment = await succeed(pool, late)

        seqs = []
        for deployment, build in pending:
            ack = await js.publish(SUBJECT_DEPLOY_JOBS, encode(deploy_command(deployment, build)))
            seqs.append(ack.seq)
        late_seq = (
            await js.publish(SUBJECT_DEPLOY_JOBS, encode(deploy_command(late_deployment, late)))
        ).seq
        await js.delete_msg(STREAM_DEPLOYS, late_seq)  # the engine acked it after all

        async with running(*(w.run() for w in watchers)):
            for watcher in watchers:
                await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
            subject = max_deliveries_advisory_subject(STREAM_DEPLOYS, CONSUMER_DEPLOY_ENGINES)
            for seq in [*seqs, late_seq]:
                await nc.publish(subject, advisory(STREAM_DEPLOYS, CONSUMER_DEPLOY_ENGINES, seq))
            await nc.flush()

            async def all_failed() -> bool:
                statuses = [(await get_deployment(pool, d.id)).status for d, _ in pending]
                return statuses == ["failed"] * len(pending)

            await eventually("the deployments to fail", all_failed)
            # Whatever the server sent the replicas was sent before these round trips ended.
            for replica in replicas:
                await replica.flush()
            await eventually("the watchers to finish", lambda: not any(w.busy for w in watchers))

        assert sum(w.received for w in watchers) == len(seqs) + 1
        outcomes: dict[tuple[str, str], int] = {}
        for m in metrics:
            for key, n in m.abandoned_jobs.items():
                outcomes[key] = outcomes.get(key, 0) + n
        assert outcomes == {(STREAM_DEPLOYS, "marked_failed"): 3, (STREAM_DEPLOYS, "gone"): 1}
        for seq in seqs:
            assert await is_deleted(js, STREAM_DEPLOYS, seq)
        for deployment, _ in pending:
            failed = await get_deployment(pool, deployment.id)
            assert failed.error == (
                "the deploy-engine stopped responding after 3 attempts: no result was reported"
            )
        assert (await get_deployment(pool, live.id)).status == "active"
        assert (await get_deployment(pool, late_deployment.id)).status == "pending"
    finally:
        for replica in replicas:
            await replica.close()


async def test_build_that_finished_but_whose_worker_died_before_the_eof_gets_one(
    pool: asyncpg.Pool, nc: Client, js: JetStreamContext, events_applied: None
) -> None:
    """The worker reported `succeeded` and died before ending the log and acking: the advisory
    leaves the build succeeded, ends its log with `succeeded`, and deletes the command."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    build_id = str(build.id)
    worker_log = LogPublisher(js, build_id)
    await worker_log.lines(4)
    await apply(pool, build_event(build, "succeeded", artifact=artifact(build), at=now()))
    seq = (await js.publish(SUBJECT_BUILD_JOBS, encode(build_command(build)))).seq

    metrics = Metrics()
    watcher = MaxDeliveriesWatcher(pool, nc, js, metrics)
    async with running(watcher.run()):
        await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        subject = max_deliveries_advisory_subject(STREAM_BUILDS, CONSUMER_BUILD_WORKERS)
        await nc.publish(subject, advisory(STREAM_BUILDS, CONSUMER_BUILD_WORKERS, seq))
        await eventually("the command's deletion", lambda: is_deleted(js, STREAM_BUILDS, seq))
        await eventually("the watcher to finish", lambda: not watcher.busy)

    assert await log_end(js, build_id) == LogEnd("succeeded")
    assert (await get_build(pool, build.id)).status == "succeeded"
    assert metrics.abandoned_jobs == {(STREAM_BUILDS, "already_finished"): 1}
