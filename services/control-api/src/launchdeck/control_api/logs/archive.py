"""The complete log of a finished build, kept in `build_logs` past the LOGS stream's age limit.

Stored as zlib-compressed NDJSON of `LogLine` (one JSON object per line), which is also what
`GET /api/v1/builds/{id}/logs` can serve after decompressing.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from contextlib import aclosing

import asyncpg
import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.messages import LogLine
from launchdeck.control_api.logs.stream import iter_finished_log_chunks
from launchdeck.control_api.store import build_logs
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(LogLine)
# Compressing a few MB takes tens of milliseconds: off the event loop above this size.
_INLINE_LIMIT = 64 * 1024


async def persist_build_log(
    pool: asyncpg.Pool, js: JetStreamContext, build_id: str, *, eof_wait_s: float | None = None
) -> bool:
    """Copy the build's whole log from the LOGS stream into `build_logs` (compressed).

    Idempotent: a second call stores the log again, but never replaces an archive with a
    shorter one (a redelivered event after the stream's age limit must not erase the log).
    Returns whether the log was complete (it ended with the worker's eof batch).
    """
    lines: list[LogLine] = []
    complete = False
    chunks = iter_finished_log_chunks(js, build_id, eof_wait_s=eof_wait_s)
    async with aclosing(chunks):
        async for chunk in chunks:
            lines.extend(chunk.lines)
            complete = chunk.end is not None
    compressed = await _compress(_encoder.encode_lines(lines))
    async with pool.acquire() as conn:
        await build_logs.save(conn, uuid.UUID(build_id), lines=len(lines), compressed=compressed)
    log.info(
        "build_log_archived",
        build_id=build_id,
        lines=len(lines),
        bytes=len(compressed),
        complete=complete,
    )
    return complete


async def load_archived_log(pool: asyncpg.Pool, build_id: str) -> list[LogLine] | None:
    """The archived log in seq order, or None when the build's log was never archived."""
    async with pool.acquire() as conn:
        compressed = await build_logs.load(conn, uuid.UUID(build_id))
    if compressed is None:
        return None
    data = await _decompress(compressed)
    return _line_decoder.decode_lines(data)


async def _compress(data: bytes) -> bytes:
    if len(data) <= _INLINE_LIMIT:
        return zlib.compress(data)
    return await asyncio.to_thread(zlib.compress, data)


async def _decompress(data: bytes) -> bytes:
    if len(data) <= _INLINE_LIMIT // 8:
        return zlib.decompress(data)
    return await asyncio.to_thread(zlib.decompress, data)
