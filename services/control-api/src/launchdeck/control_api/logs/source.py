"""Where a build's log is read from: the archive once persisted, otherwise the LOGS stream.

Shared by the HTTP log endpoint and both WebSocket endpoints, so they answer with the same lines.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

import asyncpg
from nats.js import JetStreamContext

from launchdeck.contracts.statuses import BUILD_FINISHED, BuildStatus
from launchdeck.control_api.logs.archive import load_archived_log
from launchdeck.control_api.logs.live import LiveLogs, Push, follow_live_log
from launchdeck.control_api.logs.stream import (
    LogChunk,
    LogEnd,
    iter_finished_log_chunks,
    iter_log_chunks,
)
from launchdeck.control_api.store import builds
from launchdeck.control_api.store.records import Build

ARCHIVE_SLICE = 100


async def build_log_chunks(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    build: Build,
    *,
    from_seq: int = 1,
    follow: bool = True,
    live: LiveLogs | None = None,
    push: Push | None = None,
) -> AsyncGenerator[LogChunk, None]:
    """The build's log from `from_seq`; with `follow` it ends with a `LogEnd` carrying a status.

    - archived (finished and persisted): the archive, then the end with the recorded status;
    - without `follow`: what the stream holds now (an end only if that includes the eof);
    - finished but not archived yet: the stream up to its eof (or the recorded status);
    - running: the stream, live, up to the eof (through the build's shared feed in `live`,
      when given: `logs.live`; lines that come while the reader keeps up go to `push`, when
      given, rather than through this generator).
    """
    build_id = str(build.id)
    archived = await load_archived_log(pool, build_id)
    if archived is not None:
        lines = [line for line in archived if line.seq >= from_seq]
        # In slices the size of a worker's batch, so readers pace it like the stream.
        for start in range(0, len(lines), ARCHIVE_SLICE):
            yield LogChunk(lines[start : start + ARCHIVE_SLICE])
        yield LogChunk([], LogEnd(build.status))
        return
    finished = follow and build.status in BUILD_FINISHED
    if finished:
        chunks = iter_finished_log_chunks(js, build_id, from_seq=from_seq)
    elif follow and live is not None:
        chunks = _live_chunks(live, js, build_id, from_seq, push)
    else:
        chunks = iter_log_chunks(js, build_id, from_seq=from_seq, follow=follow)
    ended = False
    async with aclosing(chunks):
        async for chunk in chunks:
            if chunk.end is not None:
                ended = True
                if chunk.end.status is None:
                    # An eof batch without a status: the recorded one is the best we know.
                    chunk = LogChunk(chunk.lines, LogEnd(await _status(pool, build.id)))
            yield chunk
    if not ended and finished:
        # No eof in the stream (the worker died for good): end with the recorded status.
        yield LogChunk([], LogEnd(build.status))


async def _live_chunks(
    live: LiveLogs, js: JetStreamContext, build_id: str, from_seq: int, push: Push | None
) -> AsyncGenerator[LogChunk, None]:
    async with live.watch(build_id) as feed:
        chunks = follow_live_log(feed, js, from_seq=from_seq, push=push)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk


async def _status(pool: asyncpg.Pool, build_id: uuid.UUID) -> BuildStatus | None:
    async with pool.acquire() as conn:
        build = await builds.get(conn, build_id)
    return None if build is None else build.status
