"""The events consumer after `EVENTS` is recreated (NATS lost its store, or an operator deleted
the stream): sequences start again at 1, and new events must still be applied, not taken for
the old events that had those numbers. On a NATS server of this test's own, since the test
deletes a stream."""

from __future__ import annotations

import asyncio

import asyncpg
from nats.aio.client import Client

from launchdeck.contracts.codec import encode
from launchdeck.contracts.subjects import STREAM_EVENTS, build_event_subject
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store.records import Build
from launchdeck.libs.jetstream import provision
from tests.control_api.helpers import artifact, build_event, get_build, new_build, new_project
from tests.control_api.test_events_consumer import publish
from tests.polling import eventually


async def run_through(
    pool: asyncpg.Pool, nc: Client, build: Build, *, with_msg_ids: bool = True
) -> list[int]:
    """Publish the build's events as its worker would (or, `with_msg_ids=False`, as a hand-made
    `nats pub` would: without a Nats-Msg-Id), until it succeeded; their sequences."""
    js = nc.jetstream()
    events = [
        build_event(build, "cloning", step="clone"),
        build_event(build, "building", step="build"),
        build_event(build, "succeeded", artifact=artifact(build)),
    ]
    seqs: list[int] = []
    for event in events:
        if with_msg_ids:
            seqs.append(await publish(js, event))
        else:
            subject = build_event_subject(event.project_id, event.build_id)
            seqs.append((await js.publish(subject, encode(event))).seq)

    async def succeeded() -> bool:
        return (await get_build(pool, build.id)).status == "succeeded"

    await eventually(f"build #{build.number} to succeed", succeeded, timeout_s=15)
    return seqs


async def test_new_events_are_applied_after_the_stream_is_recreated(
    pool: asyncpg.Pool, own_nc: Client
) -> None:
    """Two builds complete before EVENTS is deleted and provisioned again under the running
    consumer; the next two builds' events get the same sequences in the new stream and still
    complete them — events with a message id (every publisher of the platform) and without."""
    js = own_nc.jetstream()
    await provision(js)
    metrics = Metrics()
    consumer = asyncio.create_task(EventsConsumer(pool, js, metrics).run())
    try:
        project = await new_project(pool)
        old_seqs = await run_through(pool, own_nc, await new_build(pool, project, deploy=False))
        old_seqs += await run_through(
            pool, own_nc, await new_build(pool, project, deploy=False), with_msg_ids=False
        )

        # What a NATS that lost its store looks like to the consumer: a new, empty EVENTS
        # (every service provisions it again at start).
        await js.delete_stream(STREAM_EVENTS)
        await provision(js)

        new_seqs = await run_through(pool, own_nc, await new_build(pool, project, deploy=False))
        new_seqs += await run_through(
            pool, own_nc, await new_build(pool, project, deploy=False), with_msg_ids=False
        )
        assert new_seqs == old_seqs  # the numbers did start again
        assert not consumer.done()
        assert metrics.events.get("duplicate", 0) == 0
        assert metrics.events["applied"] == 12
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
