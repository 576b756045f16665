"""Following a build log in batched frames: the client asks for them and hands out each line once,
in order, across frames and a reconnect."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.contracts.ws import EndFrame, LogFrame
from tests.cli.support import ServeApp


def entry(seq: int) -> dict[str, Any]:
    return {"seq": seq, "ts": "2026-11-29T12:00:00Z", "stream": "stdout", "line": f"line {seq}"}


def batched_log_app(queries: list[dict[str, str]]) -> web.Application:
    """Lines 1..7 in `logs` frames over two connections; the second repeats line 3."""

    async def log_ws(request: web.Request) -> web.WebSocketResponse:
        queries.append(dict(request.query))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if len(queries) == 1:
            await ws.send_json({"type": "logs", "build_id": "b1", "lines": [entry(1), entry(2)]})
            await ws.send_json({"type": "logs", "build_id": "b1", "lines": [entry(3)]})
            await ws.close(code=1013, message=b"slow consumer")
        else:
            lines = [entry(seq) for seq in range(3, 8)]
            await ws.send_json({"type": "logs", "build_id": "b1", "lines": lines})
            await ws.send_json({"type": "end", "build_id": "b1", "status": "failed"})
            await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/builds/{id}/logs/ws", log_ws)
    return app


async def test_follow_unpacks_batched_frames_without_gap_or_duplicate(
    serve_app: ServeApp,
) -> None:
    """The client opts into batches; lines 1..7 come out once each as `LogFrame`s, then the end."""
    queries: list[dict[str, str]] = []
    url = serve_app(batched_log_app(queries))
    frames: list[LogFrame | EndFrame] = []
    async with LaunchdeckClient(url, "t") as client:
        async for frame in client.follow_build_log("b1"):
            frames.append(frame)
    logs = [f for f in frames if isinstance(f, LogFrame)]
    assert [f.seq for f in logs] == list(range(1, 8))
    assert logs[0].line == "line 1"
    assert logs[0].build_id == "b1"
    assert frames[-1] == EndFrame(build_id="b1", status="failed")
    assert queries == [{"from_seq": "1", "batch": "true"}, {"from_seq": "4", "batch": "true"}]
