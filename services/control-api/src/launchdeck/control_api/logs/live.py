"""One reader per running build's log, shared by every viewer of it in this process.

Without it each viewer has its own ordered consumer: 500 viewers of one build are 500 copies of
every batch delivered by NATS, decoded and encoded by this process, which cannot keep up with a
build printing a few thousand lines a second. A `LiveLog` reads the log once, from where the
stream is when its first viewer comes, and keeps the chunks it read (the last `RETAIN_LINES`
lines' worth); each viewer walks that list at its own pace, so a slow one still waits only for
itself, and what a viewer derives from a chunk (its encoded frames: `LogChunk.memo`) is made
once for all.

A viewer that has caught up and gave a `Push` is not woken at all while it keeps up: the feed
hands it the new lines itself (one call per viewer, the lines joined and encoded once for all of
them), until the viewer has no room for them or the log ends; then the viewer's own task goes on
from where the feed left it. With 500 viewers this is what keeps a 2-core server within its
budget: a viewer costs the feed one call and its socket one frame per wake-up.

A viewer (`follow_live_log`) gets the lines before the feed's start from a consumer of its own,
up to the stream sequence where the feed starts, then the feed's chunks from the first; lines
are deduplicated by seq throughout, so the hand-over neither skips nor repeats one. A viewer
that falls behind the retained chunks, or whose feed failed, continues on a consumer of its own
from the line after its last. The feed stops when its last viewer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.control_api.logs.stream import LogChunk, iter_log_chunks
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# Lines a feed keeps for viewers that are behind (older chunks are dropped past this).
RETAIN_LINES = 20_000
# Chunks appended without waking the viewers while more batches are already waiting.
MAX_UNANNOUNCED = 64

# Takes the new lines for a viewer (True), or declines them (False: no room, or gone); the
# viewer's own task then reads them from the feed.
Push = Callable[[LogChunk], bool]


class _Cursor:
    """Where a pushed viewer is in the feed, and how to wake its task when pushing stops."""

    __slots__ = ("index", "last_seq", "push", "woken")

    def __init__(self, index: int, last_seq: int, push: Push) -> None:
        self.index = index
        self.last_seq = last_seq
        self.push = push
        self.woken = asyncio.Event()


class LiveLog:
    """The chunks of one build's log read since the feed started, in order."""

    def __init__(self, js: JetStreamContext, build_id: str) -> None:
        self.build_id = build_id
        self._js = js
        self._chunks: list[LogChunk] = []
        self._base = 0  # the index of _chunks[0] among every chunk read
        self._lines = 0  # lines in _chunks
        self._dropped = 0  # chunks at the head of _chunks dropped, not yet deleted
        self._unannounced = 0  # chunks appended since the viewers were last woken
        self.start_stream_seq = 0  # the first LOGS stream sequence the feed reads
        self.done = False  # the reader stopped: the log ended, or it failed (`failed`)
        self.failed = False
        self.viewers = 0
        self._started = asyncio.Event()
        self._grown = asyncio.Event()  # replaced by a fresh one on every change
        self._pushed: dict[_Cursor, None] = {}  # viewers fed by `_push_all`, in arrival order
        self._task = asyncio.create_task(self._read())

    @property
    def end_index(self) -> int:
        return self._base + len(self._chunks) - self._dropped

    def chunks_from(self, index: int) -> list[LogChunk] | None:
        """The chunks from `index` on; None when some of them were dropped already."""
        if index < self._base:
            return None
        return self._chunks[index - self._base + self._dropped :]

    async def started(self) -> None:
        await self._started.wait()

    async def wait_beyond(self, index: int) -> None:
        """Until there is a chunk at `index` (or the reader stopped)."""
        while index >= self.end_index and not self.done:
            await self._grown.wait()

    async def pushing(self, index: int, last_seq: int, push: Push) -> tuple[int, int]:
        """Hand this viewer's new lines to `push` until it declines some or the log ends;
        (index, last_seq) where its own reading resumes."""
        cursor = _Cursor(index, last_seq, push)
        if self.done or index < self.end_index:
            return index, last_seq
        self._pushed[cursor] = None
        try:
            await cursor.woken.wait()
        finally:
            self._pushed.pop(cursor, None)
        return cursor.index, cursor.last_seq

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _append(self, chunk: LogChunk) -> None:
        self._chunks.append(chunk)
        self._unannounced += 1
        self._lines += len(chunk.lines)
        while self._lines > RETAIN_LINES and len(self._chunks) - self._dropped > 1:
            self._lines -= len(self._chunks[self._dropped].lines)
            self._dropped += 1
            self._base += 1
        if self._dropped > len(self._chunks) // 2:  # deleted in bulk: amortised O(1)
            del self._chunks[: self._dropped]
            self._dropped = 0
        # Viewers are woken once the batches already received are in: a loaded server wakes
        # each of them once for several chunks, and they send them in one frame (self-pacing).
        if chunk.behind == 0 or chunk.end is not None or self._unannounced >= MAX_UNANNOUNCED:
            self._changed()

    def _changed(self) -> None:
        self._unannounced = 0
        if self._pushed:
            self._push_all()
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    def _push_all(self) -> None:
        joined: dict[int, LogChunk | None] = {}  # by index: viewers there share one chunk
        end = self.end_index
        for cursor in list(self._pushed):
            chunk = joined.get(cursor.index, _UNSET)
            if chunk is _UNSET:
                chunks = self.chunks_from(cursor.index)
                chunk = joined[cursor.index] = _join(chunks) if chunks else None
            if (
                chunk is None
                or self.done
                or chunk.end is not None
                or not chunk.lines
                or chunk.lines[0].seq <= cursor.last_seq
                or not cursor.push(chunk)
            ):
                # Anything but plain new lines taken: the viewer's task takes over.
                del self._pushed[cursor]
                cursor.woken.set()
                continue
            cursor.index, cursor.last_seq = end, chunk.lines[-1].seq

    async def _read(self) -> None:
        subject = build_log_subject(self.build_id)
        try:
            try:
                newest = await self._js.get_last_msg(STREAM_LOGS, subject)
            except NotFoundError:
                self.start_stream_seq = 1
            else:
                self.start_stream_seq = (newest.seq or 0) + 1
            self._started.set()
            chunks = iter_log_chunks(
                self._js, self.build_id, start_stream_seq=self.start_stream_seq
            )
            async with aclosing(chunks):
                async for chunk in chunks:
                    self._append(chunk)
                    if chunk.end is not None:
                        break
        except Exception:
            log.exception("live_log_failed", build_id=self.build_id)
            self.failed = True
        finally:
            self.done = True
            self._started.set()
            self._changed()
            for cursor in list(self._pushed):
                cursor.woken.set()


class LiveLogs:
    """The feeds of this process, by build: made for a build's first viewer, stopped after its
    last."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._feeds: dict[str, LiveLog] = {}

    @contextlib.asynccontextmanager
    async def watch(self, build_id: str) -> AsyncIterator[LiveLog]:
        feed = self._feeds.get(build_id)
        if feed is None or feed.failed:
            feed = self._feeds[build_id] = LiveLog(self._js, build_id)
        feed.viewers += 1
        try:
            yield feed
        finally:
            feed.viewers -= 1
            if feed.viewers == 0:
                if self._feeds.get(build_id) is feed:
                    del self._feeds[build_id]
                await feed.stop()

    @property
    def count(self) -> int:
        return len(self._feeds)

    async def stop_all(self) -> None:
        for feed in list(self._feeds.values()):
            await feed.stop()


def _after(chunk: LogChunk, last_seq: int) -> LogChunk:
    """`chunk` without the lines up to `last_seq` (the chunk itself, shared, when none is)."""
    if not chunk.lines or chunk.lines[0].seq > last_seq:
        return chunk
    return LogChunk([x for x in chunk.lines if x.seq > last_seq], chunk.end, chunk.stream_seq)


_UNSET: LogChunk | None = LogChunk()


def _join(parts: list[LogChunk]) -> LogChunk:
    """One chunk of `parts` (the part itself when there is one)."""
    if len(parts) == 1:
        return parts[0]
    lines = [line for part in parts for line in part.lines]
    return LogChunk(lines, parts[-1].end, parts[-1].stream_seq, parts=tuple(parts))


async def follow_live_log(
    feed: LiveLog, js: JetStreamContext, *, from_seq: int = 1, push: Push | None = None
) -> AsyncGenerator[LogChunk, None]:
    """The build's log from `from_seq` through `feed` (see the module docstring), up to its end;
    with `push`, the lines that come while this viewer keeps up go to `push` instead."""
    last_seq = from_seq - 1
    await feed.started()
    if not feed.failed:
        # The lines stored before the feed's start, from a consumer of this viewer's own.
        before = iter_log_chunks(
            js, feed.build_id, from_seq=from_seq, stop_stream_seq=feed.start_stream_seq - 1
        )
        async with aclosing(before):
            async for chunk in before:
                if chunk.lines:
                    last_seq = chunk.lines[-1].seq
                yield chunk
                if chunk.end is not None:
                    return
        index = 0
        while not feed.failed:
            chunks = feed.chunks_from(index)
            if chunks is None:
                break  # fell behind what the feed keeps
            index += len(chunks)
            parts: list[LogChunk] = []
            for shared in chunks:
                chunk = _after(shared, last_seq)
                if chunk.lines:
                    last_seq = chunk.lines[-1].seq
                if chunk.lines or chunk.end is not None:
                    parts.append(chunk)
                if chunk.end is not None:
                    break
            # What came since this viewer last looked, in one go (one wake-up, one frame).
            if parts:
                yield _join(parts)
                if parts[-1].end is not None:
                    return
            if push is not None and index >= feed.end_index and not feed.done:
                index, last_seq = await feed.pushing(index, last_seq, push)
                continue
            if feed.done and index >= feed.end_index:
                break  # stopped without the end (cancelled)
            await feed.wait_beyond(index)
    # On a consumer of its own from here (the feed failed, or this viewer is too far behind).
    rest = iter_log_chunks(js, feed.build_id, from_seq=last_seq + 1)
    async with aclosing(rest):
        async for chunk in rest:
            yield chunk
