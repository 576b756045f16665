"""`libs.publish` against a NATS server of the test's own: a publish on a job's path waits
through an outage shorter than its deadline, and fails with a clear error after it."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from structlog.testing import capture_logs

from launchdeck.libs.publish import NatsUnavailable, publish_once_by_id
from tests.libs.support import RestartableNats
from tests.polling import eventually

STREAM = "PUBTEST"
SUBJECT = "test.pub"


@pytest_asyncio.fixture(loop_scope="session")
async def pub_js(own_nc: Client) -> JetStreamContext:
    """A file-backed stream (it survives the restart), deduplicating by Nats-Msg-Id."""
    js = own_nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE, duplicate_window=120.0
        )
    )
    return js


async def test_a_publish_waits_through_an_outage_shorter_than_its_deadline(
    restartable_nats: RestartableNats, own_nc: Client, pub_js: JetStreamContext
) -> None:
    """NATS stops while a publish is due: the publish waits (one outage_began, no error), gets
    through once the server is back, is stored once, and logs outage_ended."""
    await restartable_nats.astop()
    await eventually("the client sees the server gone", lambda: not own_nc.is_connected)
    with capture_logs() as logs:
        publish = asyncio.create_task(
            publish_once_by_id(
                pub_js,
                SUBJECT,
                b"hello",
                msg_id="m-1",
                deadline=time.monotonic() + 30,
                what="the test message",
            )
        )
        await eventually(
            "the outage is noticed", lambda: any(e["event"] == "outage_began" for e in logs)
        )
        assert not publish.done()
        await restartable_nats.astart()
        await asyncio.wait_for(publish, 20)
        # A retry of the same message (a lost ack, say) is stored once.
        await publish_once_by_id(
            pub_js, SUBJECT, b"hello", msg_id="m-1", deadline=time.monotonic() + 10
        )
    outage = [e["event"] for e in logs if e.get("operation") == "the test message"]
    assert outage == ["outage_began", "outage_ended"]
    assert (await pub_js.stream_info(STREAM)).state.messages == 1


async def test_a_publish_fails_clearly_after_its_deadline(
    restartable_nats: RestartableNats, own_nc: Client, pub_js: JetStreamContext
) -> None:
    """NATS stays away past the deadline: NatsUnavailable soon after it (not a hang, not an
    early give-up), saying how long NATS was away and what was not stored."""
    await restartable_nats.astop()
    await eventually("the client sees the server gone", lambda: not own_nc.is_connected)
    started = time.monotonic()
    with pytest.raises(NatsUnavailable) as raised:
        await asyncio.wait_for(
            publish_once_by_id(
                pub_js,
                SUBJECT,
                b"lost",
                msg_id="m-2",
                deadline=started + 3,
                what="the test message",
            ),
            15,
        )
    took = time.monotonic() - started
    assert 3 <= took < 5
    message = str(raised.value)
    assert message.startswith("NATS was unavailable for 3s (disconnected)")
    assert message.endswith("the deadline passed: the test message was not stored")


async def test_a_publish_waits_for_a_stream_that_does_not_answer_yet(
    pub_js: JetStreamContext,
) -> None:
    """Connected, but no stream answers on the subject (a stream without a leader, a server
    still recovering): retried with backoff until the stream is there."""
    with capture_logs() as logs:
        publish = asyncio.create_task(
            publish_once_by_id(
                pub_js,
                "test.late",
                b"late",
                msg_id="late-1",
                deadline=time.monotonic() + 20,
                what="the late message",
            )
        )
        await eventually(
            "the outage is noticed", lambda: any(e["event"] == "outage_began" for e in logs)
        )
        assert not publish.done()
        await pub_js.add_stream(StreamConfig(name="LATE", subjects=["test.late"]))
        await asyncio.wait_for(publish, 10)
    began = next(e for e in logs if e["event"] == "outage_began")
    assert began["error"].startswith("NoStreamResponseError")
    assert (await pub_js.stream_info("LATE")).state.messages == 1
