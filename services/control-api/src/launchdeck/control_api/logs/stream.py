"""Reading one build's log from the LOGS stream: history and live through the same consumer.

The build-worker publishes `LogBatch`es on `build_log_subject(build_id)`. A JetStream ordered
consumer on that subject replays every batch in stream order and then keeps delivering new ones,
so a reader that connects before, during or after the build sees the same sequence without a gap
between "history" and "live". A worker that crashes may publish some lines again (attempt 2
repeats what it could not prove was stored), so lines are deduplicated by their per-build `seq`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from launchdeck.contracts.messages import LogBatch, LogLine
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.libs.cancellation import honour_swallowed_cancel
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage

log = get_logger(__name__)

# How long the reader of a finished build waits for its eof batch when the build's terminal
# status was recorded before the worker's last batch landed in the stream.
EOF_WAIT_S = 5.0
# A live reader with nothing new for this long re-subscribes from where it was: its ordered
# consumer may have died with a node (on a cluster, it lives on the stream's leader) or with a
# NATS restart, and nats-py does not always notice. A new consumer is cheap; a viewer left
# waiting is not (measured: the first line after a LOGS leader was killed came 15 s late with
# 15 s here, within 6 s with 5 s).
IDLE_RESUBSCRIBE_S = 5.0

_batch_decoder = msgspec.json.Decoder(LogBatch)


@dataclass(frozen=True)
class LogEnd:
    """The log is complete; `status` is the build's final status as the eof batch carried it."""

    status: BuildStatus | None


@dataclass(frozen=True)
class LogChunk:
    """New lines of one batch (seq ascending, never seen before) and, on the last one, the end.

    `stream_seq`: the LOGS stream sequence of the batch (0 when not read from the stream).
    `behind`: batches already received and waiting to be read after this one (a reader that
    fans chunks out tells its viewers once it has caught up, not once per batch).
    `memo`: what a reader derived from the lines once (a WebSocket's encoded frames), kept with
    the chunk so that readers sharing it (`logs.live`) do not each redo it. `parts`: the chunks
    this one joins (their lines, in order, are its lines), so that what was derived from each
    part is reused.
    """

    lines: list[LogLine] = field(default_factory=list)
    end: LogEnd | None = None
    stream_seq: int = 0
    behind: int = 0
    parts: tuple[LogChunk, ...] = field(default=(), compare=False, repr=False)
    memo: dict[object, list[bytes]] = field(default_factory=dict, compare=False, repr=False)


async def iter_log(
    js: JetStreamContext, build_id: str, *, from_seq: int = 1, follow: bool = True
) -> AsyncGenerator[LogLine | LogEnd, None]:
    """Every line of the build's log from `from_seq` in order, then `LogEnd` at the eof batch.

    With `follow=False` it stops once it has read what the stream held when it started, even if
    the log is not complete (no `LogEnd` then).
    """
    async with aclosing(iter_log_chunks(js, build_id, from_seq=from_seq, follow=follow)) as chunks:
        async for chunk in chunks:
            for line in chunk.lines:
                yield line
            if chunk.end is not None:
                yield chunk.end


async def iter_log_chunks(
    js: JetStreamContext,
    build_id: str,
    *,
    from_seq: int = 1,
    follow: bool = True,
    start_stream_seq: int = 1,
    stop_stream_seq: int | None = None,
) -> AsyncGenerator[LogChunk, None]:
    """`iter_log` a batch at a time (what the WebSocket pumps use: one wake-up per batch).

    `start_stream_seq`: read the subject's batches from this LOGS stream sequence on (lines
    before it are not looked at); `stop_stream_seq`: stop once the batch there (or the first
    after it) has been read (0: read nothing).
    """
    subject = build_log_subject(build_id)
    stop_at: int | None = stop_stream_seq
    if stop_at is not None and stop_at < start_stream_seq:
        return
    if not follow and stop_at is None:
        # The stream position of the subject's newest batch right now: "caught up" means there.
        try:
            newest = await js.get_last_msg(STREAM_LOGS, subject)
        except NotFoundError:
            return
        stop_at = newest.seq
    last_seq = from_seq - 1
    resume_at = start_stream_seq  # the stream sequence to (re)start the consumer from
    while True:
        sub = await subscribe_from(js, subject, resume_at)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=IDLE_RESUBSCRIBE_S)
                except nats.errors.TimeoutError:
                    # Quiet for a while: a silent build, or an ordered consumer that could not
                    # reset itself while NATS was down. Start a fresh one where we were.
                    break
                stream_seq = msg.metadata.sequence.stream
                resume_at = stream_seq + 1
                try:
                    batch = _batch_decoder.decode(msg.data)
                except msgspec.DecodeError as exc:
                    log.warning("log_batch_undecodable", build_id=build_id, error=str(exc))
                    continue
                fresh: list[LogLine] = []
                for line in batch.lines:
                    if line.seq > last_seq:
                        fresh.append(line)
                        last_seq = line.seq
                end = LogEnd(batch.status) if batch.eof else None
                if fresh or end is not None:
                    yield LogChunk(fresh, end, stream_seq, behind=sub.pending_msgs)
                if end is not None:
                    return
                if stop_at is not None and stream_seq >= stop_at:
                    return
        finally:
            # The connection may already be closing (shutdown); the server drops the consumer.
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


async def subscribe_from(
    js: JetStreamContext, subject: str, start_seq: int, *, start_time: datetime | None = None
) -> Any:
    """An ordered consumer on `subject` of LOGS from stream sequence `start_seq` (or from the
    first message stored at `start_time` or later), retried while NATS is unreachable (a reader
    following a live build outlives a NATS restart)."""
    outage = Outage("nats", subject=subject)
    if start_time is not None:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time
        )
    else:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
        )
    while True:
        try:
            sub = await js.subscribe(
                subject, stream=STREAM_LOGS, ordered_consumer=True, config=config
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            await outage.backoff(exc)
        else:
            outage.over()
            try:
                # Told to stop while subscribing (nats-py can swallow that cancel): a reader
                # would otherwise go on waiting for lines, and whoever stops it with it.
                honour_swallowed_cancel()
            except asyncio.CancelledError:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
                raise
            return sub


async def iter_finished_log_chunks(
    js: JetStreamContext, build_id: str, *, from_seq: int = 1, eof_wait_s: float | None = None
) -> AsyncGenerator[LogChunk, None]:
    """The log of a build already recorded as finished: catch up, then wait briefly for the eof.

    The worker's eof batch and its terminal status event travel separately, so the status can be
    seen first; waiting up to `eof_wait_s` (default `EOF_WAIT_S`) keeps the last lines. Without
    an eof (a worker that died for good) the log ends where the stream does, with no `LogEnd`.
    """
    next_seq = from_seq
    async with aclosing(iter_log_chunks(js, build_id, from_seq=from_seq, follow=False)) as chunks:
        async for chunk in chunks:
            if chunk.lines:
                next_seq = chunk.lines[-1].seq + 1
            yield chunk
            if chunk.end is not None:
                return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (EOF_WAIT_S if eof_wait_s is None else eof_wait_s)
    async with aclosing(iter_log_chunks(js, build_id, from_seq=next_seq, follow=True)) as chunks:
        while True:
            # A per-item timeout (not one around the loop): the consumer's time between items
            # must not be cut short by our deadline.
            try:
                chunk = await asyncio.wait_for(anext(chunks), deadline - loop.time())
            except (TimeoutError, StopAsyncIteration):
                return
            yield chunk
            if chunk.end is not None:
                return
