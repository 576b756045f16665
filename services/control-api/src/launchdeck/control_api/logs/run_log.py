"""Reading one run's log from the LOGS stream (`ld.logs.run.<run>`, `RunLogBatch`es).

Like a build's (`logs.stream`): one ordered consumer replays the history and then follows live,
lines are deduplicated by their `seq`, and a reader with nothing new for a while subscribes
again where it was. Unlike a build's, a run's log is not archived in Postgres: it lives as long
as the LOGS stream keeps it (`LAUNCHDECK_LOGS_MAX_AGE`), and a run's record keeps its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.messages import LogLine, RunLogBatch
from launchdeck.contracts.statuses import RUN_FINISHED, RunStatus
from launchdeck.contracts.subjects import STREAM_LOGS, run_log_subject
from launchdeck.control_api.logs.stream import EOF_WAIT_S, IDLE_RESUBSCRIBE_S, subscribe_from
from launchdeck.control_api.store.records import Run
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_decoder = msgspec.json.Decoder(RunLogBatch)


@dataclass(frozen=True)
class RunLogChunk:
    """New lines of one batch (seq ascending, never seen before); `ended` on the last one, with
    the run's final status (as the eof carried it, else as recorded)."""

    lines: list[LogLine] = field(default_factory=list)
    ended: bool = False
    status: RunStatus | None = None


async def run_log_chunks(
    js: JetStreamContext, run: Run, *, from_seq: int = 1, follow: bool = True
) -> AsyncGenerator[RunLogChunk, None]:
    """The run's log from `from_seq`. Without `follow`: what the stream holds now (ended only if
    that includes the eof; a finished run's eof is waited for briefly). With `follow`: live up to
    the eof."""
    run_id = str(run.id)
    finished = run.status in RUN_FINISHED
    next_seq = from_seq
    if not follow or finished:
        async with aclosing(_chunks(js, run_id, from_seq, until_now=True)) as chunks:
            async for chunk in chunks:
                if chunk.lines:
                    next_seq = chunk.lines[-1].seq + 1
                yield chunk
                if chunk.ended:
                    return
        if not follow:
            return
    # Live (or a finished run whose eof has not landed yet: it may lag the recorded status a
    # moment; past that, the log ends where the stream does — an engine that died for good
    # never wrote one).
    wait_s: float | None = None
    if finished:
        age = (datetime.now(UTC) - run.finished_at).total_seconds() if run.finished_at else 0.0
        wait_s = max(0.0, EOF_WAIT_S - age)
    loop = asyncio.get_running_loop()
    deadline = None if wait_s is None else loop.time() + wait_s
    async with aclosing(_chunks(js, run_id, next_seq, until_now=False)) as chunks:
        while True:
            try:
                if deadline is None:
                    chunk = await anext(chunks)
                else:
                    chunk = await asyncio.wait_for(anext(chunks), max(0.0, deadline - loop.time()))
            except (TimeoutError, StopAsyncIteration):
                break
            yield chunk
            if chunk.ended:
                return
    yield RunLogChunk([], ended=True, status=run.status if finished else None)


async def _chunks(
    js: JetStreamContext, run_id: str, from_seq: int, *, until_now: bool
) -> AsyncGenerator[RunLogChunk, None]:
    subject = run_log_subject(run_id)
    stop_at: int | None = None
    if until_now:
        try:
            stop_at = (await js.get_last_msg(STREAM_LOGS, subject)).seq
        except NotFoundError:
            return
    last_seq = from_seq - 1
    resume_at = 1
    while True:
        sub = await subscribe_from(js, subject, resume_at)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=IDLE_RESUBSCRIBE_S)
                except nats.errors.TimeoutError:
                    break  # quiet for a while: a fresh consumer from where we were
                resume_at = msg.metadata.sequence.stream + 1
                try:
                    batch = _decoder.decode(msg.data)
                except msgspec.DecodeError as exc:
                    log.warning("run_log_batch_undecodable", run_id=run_id, error=str(exc))
                    continue
                fresh = [line for line in batch.lines if line.seq > last_seq]
                if fresh:
                    last_seq = fresh[-1].seq
                if fresh or batch.eof:
                    yield RunLogChunk(fresh, ended=batch.eof, status=batch.status)
                if batch.eof:
                    return
                if stop_at is not None and msg.metadata.sequence.stream >= stop_at:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
