"""The NATS connection helpers of `libs.jetstream` while the server goes away and comes back."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import pytest
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from launchdeck.libs.jetstream import connect, disconnect, wait_connected
from tests.libs.support import RestartableNats
from tests.polling import eventually


async def test_an_outage_is_logged_once_each_way_without_errors(
    restartable_nats: RestartableNats, caplog: pytest.LogCaptureFixture
) -> None:
    """Losing the server logs one warning, getting it back one info line; the failed reconnect
    attempts in between are debug lines, not errors with tracebacks."""
    nc = await connect(restartable_nats.url, name="test-connection")
    try:
        with capture_logs() as logs, caplog.at_level(logging.WARNING):
            await restartable_nats.astop()
            await eventually("disconnected", lambda: not nc.is_connected, timeout_s=15.0)
            # Let it fail to reconnect a few times (every 0.5 s) before the server is back.
            await eventually(
                "failed reconnects",
                lambda: sum(e["event"] == "nats_connection_error" for e in logs) >= 3,
                timeout_s=15.0,
            )
            await restartable_nats.astart()
            await wait_connected(nc)
        await nc.flush()
    finally:
        await nc.close()
    levels = [(e["event"], e["log_level"]) for e in logs if e["log_level"] != "debug"]
    assert levels == [("nats_disconnected", "warning"), ("nats_reconnected", "info")]
    assert [r for r in caplog.records if r.name.startswith("nats")] == []


async def test_disconnect_while_the_server_is_away_closes_at_once(
    restartable_nats: RestartableNats,
) -> None:
    """Shutting down during an outage closes the connection (nats-py refuses to drain then)
    instead of raising; `wait_connected` on it then reports the closed connection."""
    nc = await connect(restartable_nats.url, name="test-connection")
    await restartable_nats.astop()
    await eventually("disconnected", lambda: not nc.is_connected, timeout_s=15.0)
    await asyncio.wait_for(disconnect(nc), 5)
    assert nc.is_closed
    with pytest.raises(nats.errors.ConnectionClosedError):
        await wait_connected(nc)


async def test_disconnect_delivers_what_was_published_then_closes(
    restartable_nats: RestartableNats,
) -> None:
    """With the server there, `disconnect` gets a message published just before it to the server
    (checked in a stream, so no subscriber's timing is involved) and closes the connection."""
    nc = await connect(restartable_nats.url, name="test-connection")
    checker = await connect(restartable_nats.url, name="test-checker")
    try:
        js = checker.jetstream()
        await js.add_stream(name="DRAINTEST", subjects=["test.drain"])
        await nc.publish("test.drain", b"last words")
        await disconnect(nc)
        assert nc.is_closed
        await eventually(
            "the last message to reach the server",
            lambda: stream_holds(js, "DRAINTEST", 1),
        )
        assert (await js.get_msg("DRAINTEST", 1)).data == b"last words"
    finally:
        await checker.close()


async def stream_holds(js: JetStreamContext, stream: str, messages: int) -> bool:
    return (await js.stream_info(stream)).state.messages >= messages


async def test_a_comma_separated_url_is_a_list_of_servers(nats_url: str) -> None:
    """`NATS_URL=a,b` (a cluster) connects to whichever server answers."""
    nc = await connect(f"nats://127.0.0.1:1, {nats_url}", name="test-cluster-url")
    try:
        assert nc.is_connected
    finally:
        await nc.close()


async def test_waiting_for_a_server_at_start_is_logged_once_and_can_be_cancelled() -> None:
    """A first connect to nothing keeps trying with one outage_began (the URL without its
    credentials) and no error lines; cancelling it ends the wait."""
    with capture_logs() as logs:
        attempt = asyncio.create_task(connect("nats://ld:hunter2@127.0.0.1:1", name="test-wait"))
        await eventually(
            "several tries",
            lambda: sum(e["event"] == "nats_connection_error" for e in logs) >= 3,
            timeout_s=15.0,
        )
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
    loud = [(e["event"], e.get("url")) for e in logs if e["log_level"] != "debug"]
    assert loud == [("outage_began", "nats://127.0.0.1:1")]
    assert "hunter2" not in repr(logs)
