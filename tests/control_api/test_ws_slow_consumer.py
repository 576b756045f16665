"""A viewer that stops reading is cut off with 1013 once its bounded queue overflows, without
slowing another viewer of the same log; it resumes with `from_seq` and misses nothing. One that
never reads again is disconnected."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import WSCloseCode
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.ws import connection as ws_connection
from launchdeck.control_api.ws.routes import WS_OUTBOXES
from tests.control_api.log_support import (
    AUTH,
    LogPublisher,
    create_build,
    running_app,
    view_until_closed,
)
from tests.control_api.support import Api
from tests.polling import eventually

QUEUE_SIZE = 32
# 8 MB of frames: more than the kernel buffers between a non-reading client and the server
# (the client's receive buffer is shrunk below; the server's send buffer tops out at 4 MB).
LINES, WIDTH = 2_000, 4_000


def small_receive_buffer(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_slow_viewer_is_closed_with_1013_and_resumes(
    api: Api,
    pool: asyncpg.Pool,
    database_url: str,
    nats_url: str,
    nc: Client,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stalled viewer gets a prefix 1..k then 1013; the other gets 1..N and the end; a
    viewer that never reads again is dropped after the close grace period."""
    monkeypatch.setattr(ws_connection, "CLOSE_WAIT_S", 1.5)
    monkeypatch.setattr(ws_connection, "SLOW_VIEWER_S", 1.0)
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id, width=WIDTH)
    path = f"/api/v1/builds/{build_id}/logs/ws"
    async with (
        running_app(pool, database_url, nats_url, nc, js, ws_queue_size=QUEUE_SIZE) as client,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=small_receive_buffer)
        ) as stalled_session,
    ):
        registry = client.server.app[WS_OUTBOXES]
        stalled = await stalled_session.ws_connect(client.make_url(path), headers=AUTH)
        gone = await stalled_session.ws_connect(client.make_url(path), headers=AUTH)
        reader = await client.ws_connect(path, headers=AUTH)
        await worker.lines(LINES, per_batch=50)
        await worker.finish("succeeded")

        complete = await view_until_closed(reader)
        assert complete.seqs == list(range(1, LINES + 1))
        assert complete.ends == [{"type": "end", "build_id": build_id, "status": "succeeded"}]
        assert complete.close_code == WSCloseCode.OK

        await eventually("the stalled viewers to be cut off", lambda: registry.slow_closes == 2)
        async with client.get("/metrics") as resp:
            page = await resp.text()
        assert "\nlaunchdeck_websocket_slow_closes_total 2\n" in page
        cut_off = await view_until_closed(stalled)  # reading again: what was on its way
        assert cut_off.close_code == WSCloseCode.TRY_AGAIN_LATER
        assert cut_off.ends == []
        last = len(cut_off.seqs)
        assert 0 < last < LINES
        assert cut_off.seqs == list(range(1, last + 1))
        assert cut_off.logs[-1]["line"].startswith(f"line {last}.")

        resumed = await view_until_closed(
            await stalled_session.ws_connect(
                client.make_url(f"{path}?from_seq={last + 1}"), headers=AUTH
            )
        )
        assert resumed.seqs == list(range(last + 1, LINES + 1))
        assert resumed.ends == [{"type": "end", "build_id": build_id, "status": "succeeded"}]

        await eventually("the silent viewer to be dropped", lambda: registry.open_count == 0)
        assert not gone.closed  # from its side nothing happened yet: it has not read
