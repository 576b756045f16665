"""Following a build log over the WebSocket: resuming a dropped connection without gap or
duplicate."""

from __future__ import annotations

from aiohttp import web

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.contracts.ws import EndFrame, LogFrame
from tests.cli.support import ServeApp


def flaky_log_app(from_seqs: list[int]) -> web.Application:
    """Serves lines 1..5 over three connections: the first is closed by the server (1013, as
    for a slow client), the second is cut mid-stream and replays a line already sent."""

    async def log_ws(request: web.Request) -> web.WebSocketResponse:
        assert request.headers["Authorization"] == "Bearer t"
        start = int(request.query["from_seq"])
        from_seqs.append(start)
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def send(seq: int) -> None:
            await ws.send_json(
                {
                    "type": "log",
                    "build_id": "b1",
                    "seq": seq,
                    "ts": "2026-11-29T12:00:00Z",
                    "stream": "stdout",
                    "line": f"line {seq}",
                }
            )

        if len(from_seqs) == 1:
            for seq in (1, 2):
                await send(seq)
            await ws.close(code=1013, message=b"slow consumer")
        elif len(from_seqs) == 2:
            for seq in (start - 1, start):  # one duplicate
                await send(seq)
            assert request.transport is not None
            request.transport.abort()  # the connection drops, no close frame
        else:
            for seq in range(start, 6):
                await send(seq)
            await ws.send_json({"type": "end", "build_id": "b1", "status": "succeeded"})
            await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/builds/{id}/logs/ws", log_ws)
    return app


async def test_follow_resumes_with_from_seq_without_gap_or_duplicate(
    serve_app: ServeApp,
) -> None:
    """Two dropped connections: the client reconnects with from_seq = next line and yields
    lines 1..5 exactly once, in order, then the end status."""
    from_seqs: list[int] = []
    url = serve_app(flaky_log_app(from_seqs))
    frames: list[LogFrame | EndFrame] = []
    async with LaunchdeckClient(url, "t") as client:
        async for frame in client.follow_build_log("b1"):
            frames.append(frame)
    assert [f.seq for f in frames if isinstance(f, LogFrame)] == [1, 2, 3, 4, 5]
    assert [f.line for f in frames if isinstance(f, LogFrame)][-1] == "line 5"
    assert frames[-1] == EndFrame(build_id="b1", status="succeeded")
    assert from_seqs == [1, 3, 4]
