"""The events consumer over real JetStream: events published on EVENTS reach Postgres, a
redelivery after a crash is applied once, and a malformed event does not block the stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildStatusChanged, DeploymentStatusChanged
from launchdeck.contracts.subjects import (
    CONSUMER_CONTROL_API_EVENTS,
    STREAM_EVENTS,
    build_event_subject,
    deployment_event_subject,
    generation_event_subject,
)
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.domain.events import EventOrigin, apply_event
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store.records import Build, Deployment
from tests.control_api.helpers import (
    artifact,
    build_event,
    deployment_event,
    get_build,
    get_deployment,
    new_build,
    new_project,
)
from tests.polling import eventually


def msg_id(event: BuildStatusChanged | DeploymentStatusChanged) -> str:
    """The `Nats-Msg-Id` the event's real publisher sets (build-worker, deploy-engine)."""
    if isinstance(event, BuildStatusChanged):
        return f"{event.build_id}:{event.attempt}:{event.status}"
    return f"{event.deployment_id}:{event.status}"


async def publish(js: JetStreamContext, event: BuildStatusChanged | DeploymentStatusChanged) -> int:
    """Publish as the build-worker or the deploy-engine does; the stream sequence."""
    if isinstance(event, BuildStatusChanged):
        subject = build_event_subject(event.project_id, event.build_id)
    else:
        subject = deployment_event_subject(event.project_id, event.deployment_id)
    headers = {"Nats-Msg-Id": msg_id(event)}
    return (await js.publish(subject, encode(event), headers=headers)).seq


async def acked_through(js: JetStreamContext, seq: int) -> bool:
    info = await js.consumer_info(STREAM_EVENTS, CONSUMER_CONTROL_API_EVENTS)
    return info.ack_floor.stream_seq >= seq


@pytest_asyncio.fixture(loop_scope="session")
async def consumer(pool: asyncpg.Pool, js: JetStreamContext) -> AsyncIterator[Metrics]:
    metrics = Metrics()
    task = asyncio.create_task(EventsConsumer(pool, js, metrics).run())
    try:
        yield metrics
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_published_events_update_builds_and_deployments(
    pool: asyncpg.Pool, js: JetStreamContext, consumer: Metrics
) -> None:
    """Build events through NATS move the build to succeeded and start its deployment;
    deployment events make it active."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    await publish(js, build_event(build, "cloning", step="clone"))
    await publish(js, build_event(build, "succeeded", artifact=artifact(build)))

    async def deployed() -> bool:
        return (await get_build(pool, build.id)).deployment_id is not None

    await eventually("the deployment to start", deployed)
    done: Build = await get_build(pool, build.id)
    assert done.status == "succeeded"
    assert done.deployment_id is not None
    deployment: Deployment = await get_deployment(pool, done.deployment_id)
    await publish(js, deployment_event(deployment, "active", url="http://x.localhost"))

    async def active() -> bool:
        return (await get_deployment(pool, deployment.id)).status == "active"

    await eventually("the deployment to be active", active)
    assert consumer.events["applied"] >= 3


async def test_event_applied_before_a_crash_is_not_applied_again(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """An event whose effect committed but whose ack was lost is redelivered and skipped."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    event = build_event(build, "succeeded", artifact=artifact(build))
    seq = await publish(js, event)
    # A previous consumer applied it, then died before acking.
    origin = EventOrigin(STREAM_EVENTS, seq, msg_id=msg_id(event))
    assert (await apply_event(pool, origin, event)).applied
    metrics = Metrics()
    task = asyncio.create_task(EventsConsumer(pool, js, metrics).run())
    try:
        await eventually("the events to be acked", lambda: acked_through(js, seq))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM deployments WHERE build_id = $1", build.id
        )
    assert count == 1
    assert metrics.events["duplicate"] == 1


async def test_malformed_and_foreign_events_do_not_block(
    pool: asyncpg.Pool, js: JetStreamContext, consumer: Metrics
) -> None:
    """A malformed build event is dropped, another service's event is skipped, and the event
    after them is still applied."""
    project = await new_project(pool)
    build = await new_build(pool, project, deploy=False)
    await js.publish(build_event_subject(str(project.id), str(build.id)), b'{"status": 42}')
    await js.publish(generation_event_subject(str(uuid.uuid4())), b'{"anything": true}')
    seq = await publish(js, build_event(build, "building"))
    await eventually("the events to be acked", lambda: acked_through(js, seq))
    assert (await get_build(pool, build.id)).status == "building"
    assert consumer.events["undecodable"] >= 1
    assert consumer.events["skipped"] >= 1
