"""`GET /api/v1/builds/{id}/logs/ws`: whenever a viewer connects (before, during or after the
build), it receives seq 1..N exactly once and in order, then `end` with the status, then a
normal close; `from_seq` resumes; bad requests are problems before any upgrade."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiohttp import WSCloseCode
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.logs import stream as logstream
from tests.control_api.log_support import (
    ADMIN,
    AUTH,
    LogPublisher,
    create_build,
    running_app,
    view_until_closed,
    view_until_seq,
)
from tests.control_api.support import Api


def ws_path(build_id: str, query: str = "") -> str:
    return f"/api/v1/builds/{build_id}/logs/ws{query}"


async def test_viewers_before_during_and_after_get_the_same_lines(
    api: Api, js: JetStreamContext
) -> None:
    """Three viewers (before, mid-build, after) each get 1..N once, in order, end, close 1000."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    client = api.client

    # Before the first line; authenticated by ?token= as websocat would be.
    before = await client.ws_connect(ws_path(build_id, f"?token={ADMIN}"))
    await worker.lines(150, per_batch=40)
    await worker.restart(replay_from=121)  # attempt 2 repeats 121..150
    during = await client.ws_connect(ws_path(build_id), headers=AUTH)
    seen_during = await view_until_seq(during, 150)  # history…
    await worker.lines(230, per_batch=64)  # …then live
    await worker.finish("succeeded", lines=4)
    after = await client.ws_connect(ws_path(build_id), headers=AUTH)

    results = await asyncio.gather(
        view_until_closed(before), view_until_closed(during, seen_during), view_until_closed(after)
    )
    expected = list(range(1, worker.published + 1))
    assert worker.published == 384
    for viewed in results:
        assert viewed.seqs == expected
        assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "succeeded"}]
        assert viewed.frames[-1]["type"] == "end"
        assert viewed.close_code == WSCloseCode.OK
    first = results[2].logs[0]
    assert set(first) == {"type", "build_id", "seq", "ts", "stream", "line"}
    assert first["build_id"] == build_id
    assert first["line"] == "line 1"
    assert first["stream"] in {"stdout", "stderr", "system"}
    assert first["ts"].endswith("Z")


async def test_from_seq_resumes_after_the_last_line_seen(api: Api, js: JetStreamContext) -> None:
    """?from_seq=N sends N..end only: what a viewer cut off at N-1 reconnects with."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(90, per_batch=25)
    await worker.finish("failed")

    ws = await api.client.ws_connect(ws_path(build_id, "?from_seq=61"), headers=AUTH)
    viewed = await view_until_closed(ws)
    assert viewed.seqs == list(range(61, 91))
    assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "failed"}]


async def test_finished_build_without_eof_ends_with_its_recorded_status(
    api: Api, js: JetStreamContext, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build recorded as failed whose worker never sent the eof still ends (recorded status)."""
    monkeypatch.setattr(logstream, "EOF_WAIT_S", 0.2)
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(12)
    await pool.execute("UPDATE builds SET status = 'failed' WHERE id = $1", uuid.UUID(build_id))

    viewed = await view_until_closed(await api.client.ws_connect(ws_path(build_id), headers=AUTH))
    assert viewed.seqs == list(range(1, 13))
    assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "failed"}]


async def test_bad_requests_are_problems_before_the_upgrade(api: Api) -> None:
    """Unknown or malformed build id → 404, from_seq < 1 → 422, no token → 401 (problem+json)."""
    build_id = await create_build(api)
    for path, status in [
        (ws_path(str(uuid.uuid4())), 404),
        (ws_path("not-a-build"), 404),
        (ws_path(build_id, "?from_seq=0"), 422),
        (ws_path(build_id, "?from_seq=abc"), 422),
    ]:
        reply = await api.call("GET", path)
        assert reply.status == status, (path, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        assert reply.body["status"] == status
    reply = await api.call("GET", ws_path(build_id), token="")
    assert reply.status == 401


async def test_sockets_are_closed_on_shutdown(
    api: Api,
    pool: asyncpg.Pool,
    database_url: str,
    nats_url: str,
    nc: Client,
    js: JetStreamContext,
) -> None:
    """Stopping the app closes every WebSocket with 1001 (going away), following ones included."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(5)
    async with running_app(pool, database_url, nats_url, nc, js) as client:
        viewer = await client.ws_connect(ws_path(build_id), headers=AUTH)
        mux = await client.ws_connect("/api/v1/ws", headers=AUTH)
        seen = await view_until_seq(viewer, 5)
        stopping = asyncio.create_task(client.server.close())  # sockets open, build running
        viewed = await view_until_closed(viewer, seen)
        muxed = await view_until_closed(mux)
        await stopping
    assert viewed.seqs == [1, 2, 3, 4, 5]
    assert viewed.ends == []
    assert viewed.close_code == WSCloseCode.GOING_AWAY
    assert muxed.close_code == WSCloseCode.GOING_AWAY
