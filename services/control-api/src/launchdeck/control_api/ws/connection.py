"""One WebSocket connection's plumbing: a bounded outbox drained by one writer, the receive loop,
and the closing handshake. Shared by both WebSocket endpoints.

Producers only ever `offer` a frame: it never waits for the socket, so a slow client slows
nothing but itself. The writer task is the only one that writes. When the backlog is full the
client is not keeping up (the kernel's socket buffers are full as well): the backlog is dropped
and the socket closed with 1013 "try again later"; the client reconnects and resumes with
`from_seq`. A log pump, which reads this viewer's own consumer and so can wait without holding
anyone else up, pauses at half the limit (`wait_for_room`) instead of overflowing a reader that is
merely a little behind; a socket that takes nothing for `SLOW_VIEWER_S` is closed the same way.

Log lines are queued a run at a time (`put_lines`: one entry per NATS batch, not per line), and
the backlog and its limit count lines. A run with a `Batcher` (a viewer that opted into batched
frames) is joined by the writer into one frame with the runs of the same batcher queued right
behind it: a frame carries the lines that are waiting when the socket is free for the next one,
so a viewer that keeps up gets one line per frame and one that is behind gets many, and no line
ever waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

SLOW_CONSUMER_REASON = b"too slow: reconnect with from_seq"
SHUTDOWN_REASON = b"server shutting down"
# How long a log pump waits for a socket that takes no frame at all before closing it with 1013.
SLOW_VIEWER_S = 5.0
# How long closing waits: for a writer to get its last frame out, for the client's close reply.
CLOSE_WAIT_S = 5.0
# aiohttp pings after this long without traffic and drops a client that does not answer in half
# of it; this is also what frees a socket whose client stopped reading altogether.
HEARTBEAT_S = 20.0

OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class Batcher:
    """How one channel's queued lines become one frame: `prefix + b",".join(lines) + suffix`,
    with at most `limit` lines in it."""

    prefix: bytes
    suffix: bytes
    limit: int


class _Run:
    """Consecutive lines queued together: whole frames (`batcher` None) or a batcher's items."""

    __slots__ = ("batcher", "items", "start")

    def __init__(self, batcher: Batcher | None, items: list[bytes]) -> None:
        self.batcher = batcher
        self.items = items
        self.start = 0  # items before it have been taken by the writer


def new_websocket() -> web.WebSocketResponse:
    # No permessage-deflate: log frames are one short line each, so deflating every frame costs
    # server CPU per viewer for little saving.
    return web.WebSocketResponse(heartbeat=HEARTBEAT_S, timeout=CLOSE_WAIT_S, compress=False)


class Outbox:
    """The frames waiting for one socket, and the task that writes them."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        limit: int,
        *,
        abort: Callable[[], None] | None = None,
        on_slow_close: Callable[[], None] | None = None,
    ) -> None:
        self._ws = ws
        self._limit = max(1, limit)
        self._abort = abort
        self._on_slow_close = on_slow_close
        self._frames: deque[bytes | _Run] = deque()
        self._count = 0  # frames and lines queued (what `limit` bounds)
        self._wakeup = asyncio.Event()
        self._close: tuple[int, bytes] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._progress = asyncio.Event()  # set whenever the writer got a frame out
        self.writer = asyncio.create_task(self._write())

    @property
    def backlog(self) -> int:
        return self._count

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def close_request(self) -> tuple[int, bytes] | None:
        """(code, reason) the socket is to be closed with once the writer is done, if any."""
        return self._close

    def offer(self, frame: bytes) -> bool:
        """Queue a text frame; False when the connection is closing (the frame is dropped)."""
        if self._close is not None:
            return False
        if self._count >= self._limit:
            self._too_slow()
            return False
        self._frames.append(frame)
        self._count += 1
        self._wakeup.set()
        return True

    def offer_lines(self, batcher: Batcher | None, items: list[bytes]) -> bool:
        """Queue a run of lines: whole frames, or a batcher's items; like `offer` otherwise."""
        if self._close is not None:
            return False
        if self._count + len(items) > self._limit:
            self._too_slow()
            return False
        if items:
            self._frames.append(_Run(batcher, items))
            self._count += len(items)
            self._wakeup.set()
        return True

    async def put_lines(self, batcher: Batcher | None, items: list[bytes]) -> bool:
        """`offer_lines` for a pump that may wait (it reads its own consumer): queue up to half
        the limit, then wait for room; False when the socket closed (or was too slow)."""
        start = 0
        while start < len(items):
            room = max(1, self._limit // 2) - self._count
            if room <= 0:
                if not await self.wait_for_room():
                    return False
                continue
            part = items if start == 0 and room >= len(items) else items[start : start + room]
            if not self.offer_lines(batcher, part):
                return False
            start += len(part)
        return True

    async def wait_for_room(self) -> bool:
        """Wait until the backlog is down to a quarter of the limit; False (and the socket closed
        with 1013) when the writer got no frame out for `SLOW_VIEWER_S`, or it is closing."""
        while self._count > self._limit // 4:
            if self._close is not None:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), SLOW_VIEWER_S)
            except TimeoutError:
                self._too_slow()
                return False
        return self._close is None

    def _too_slow(self) -> None:
        log.warning("ws_slow_consumer_closed", backlog=self._count)
        self.close_now(WSCloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)
        if self._on_slow_close is not None:
            self._on_slow_close()

    def finish(self, code: int = WSCloseCode.OK, reason: bytes = b"") -> None:
        """Close once every queued frame has been sent."""
        if self._close is None:
            self._close = (code, reason)
            self._wakeup.set()

    def close_now(self, code: int, reason: bytes = b"") -> None:
        """Drop the backlog and close as soon as the frame being written (if any) is out.

        A client that does not read at all would keep that frame (and the socket) forever:
        after `CLOSE_WAIT_S` the connection is aborted instead.
        """
        self._frames.clear()
        self._count = 0
        if self._close is None or self._close[0] == WSCloseCode.OK:
            self._close = (code, reason)
        self._wakeup.set()
        if self._abort_timer is None and self._abort is not None:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(CLOSE_WAIT_S, self._abort_if_stuck)

    def _abort_if_stuck(self) -> None:
        if not self.writer.done() and self._abort is not None:
            log.warning("ws_client_stuck_aborted")
            self._abort()  # the writer's pending write fails, and everything unwinds

    async def stop(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        await cancel_task(self.writer)

    async def _write(self) -> None:
        """Write frames until a close is requested; the closing itself is `serve`'s."""
        ws = self._ws
        try:
            while True:
                while self._frames:
                    await ws.send_frame(self._next_frame(), WSMsgType.TEXT)
                    self._progress.set()
                if self._close is not None:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except ConnectionError:
            pass  # the client went away; the receive loop sees it too

    def _next_frame(self) -> bytes:
        """Take the next frame off the queue (a batcher's: every line it may carry)."""
        head = self._frames[0]
        if isinstance(head, bytes):
            self._frames.popleft()
            self._count -= 1
            return head
        batcher = head.batcher
        if batcher is None:  # a run of whole frames: its next one
            frame = head.items[head.start]
            head.start += 1
            if head.start == len(head.items):
                self._frames.popleft()
            self._count -= 1
            return frame
        parts: list[bytes] = []
        room = batcher.limit
        while room and self._frames:
            run = self._frames[0]
            if isinstance(run, bytes) or run.batcher is not batcher:
                break  # another channel's line, or an end frame: the batch stops here
            taken = run.items[run.start : run.start + room]
            parts += taken
            room -= len(taken)
            run.start += len(taken)
            if run.start == len(run.items):
                self._frames.popleft()
        self._count -= len(parts)
        return batcher.prefix + b",".join(parts) + batcher.suffix


async def serve(ws: web.WebSocketResponse, outbox: Outbox, on_text: OnText | None) -> None:
    """Receive until the client leaves, or until the outbox asks to close: then close with its
    code and wait for the client's close reply (a clean closing handshake)."""
    receiving = asyncio.create_task(_receive(ws, on_text))
    try:
        await asyncio.wait({receiving, outbox.writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Closing from another task while `receive` waits would drop the transport before the
        # client's reply, so the receive loop is stopped first and `close` reads the reply.
        await cancel_task(receiving)
    close = outbox.close_request
    if close is not None and outbox.writer.done() and not ws.closed:
        await ws.close(code=close[0], message=close[1])


async def _receive(ws: web.WebSocketResponse, on_text: OnText | None) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and on_text is not None:
            await on_text(msg.data)
        elif msg.type is WSMsgType.ERROR:
            return


class OutboxRegistry:
    """Every open WebSocket of the app, so shutdown can close them all; and their counts."""

    def __init__(self, *, on_slow_close: Callable[[], None] | None = None) -> None:
        self._open: set[Outbox] = set()
        self._on_slow_close = on_slow_close
        self.slow_closes = 0  # sockets closed with 1013 since start

    @property
    def open_count(self) -> int:
        return len(self._open)

    def _count_slow_close(self) -> None:
        self.slow_closes += 1
        if self._on_slow_close is not None:
            self._on_slow_close()

    @contextlib.asynccontextmanager
    async def open(
        self, request: web.Request, ws: web.WebSocketResponse, limit: int
    ) -> AsyncIterator[Outbox]:
        transport = request.transport
        outbox = Outbox(
            ws,
            limit,
            abort=transport.abort if transport is not None else None,
            on_slow_close=self._count_slow_close,
        )
        self._open.add(outbox)
        try:
            yield outbox
        finally:
            self._open.discard(outbox)
            await outbox.stop()

    async def close_all(self) -> None:
        """Ask every socket to close (1001) now; their handlers do the closing handshake."""
        for outbox in list(self._open):
            outbox.close_now(WSCloseCode.GOING_AWAY, SHUTDOWN_REASON)


async def cancel_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end (its own failure, if any, is raised)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
