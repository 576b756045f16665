"""Reading a running app's log from the LOGS stream: the recent lines, then (following) live ones.

The deploy-engine publishes what a project's processes print as `AppLogBatch`es on
`app_log_subject(project)` — every deployment and process type of the project on one subject, in
the order it read them. A batch's stream sequence is its *cursor*: readers order by it and
resume from it (a line is known by its deployment, process and `seq`, which count per
deployment and process).

Where reading starts:
- `tail=N`: the last N lines. JetStream reads forwards only, so the start is found by reading
  back in growing windows of stream sequences (the subject shares LOGS with every build's log)
  until N lines are behind, then reading forwards from there; cost grows with how far back N
  lines go, not with how much the stream holds;
- `since=T`: the first batch stored at T or later (lines older than T in it are dropped);
- `from_cursor=C`: the batch at stream sequence C (a viewer that was cut off resumes there and
  drops the lines it has);
- none: the oldest batch the stream still holds (7 days, 2 GiB: `LOGS`' limits).

Without `follow` it stops at the newest batch stored when it started. With it, it waits for new
batches for as long as the reader wants (one ordered consumer per reader, re-created where it
was after a quiet spell, as the build log reader does: `stream.IDLE_RESUBSCRIBE_S`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.messages import AppLogBatch, LogLine
from launchdeck.contracts.subjects import STREAM_LOGS, app_log_subject
from launchdeck.control_api.logs import stream as logstream
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# The first window read back when looking for the start of the last N lines (stream sequences);
# each further one is `GROWTH` times larger.
FIRST_WINDOW = 256
GROWTH = 4
# How long a bounded read waits for the next batch of a range it knows is there.
READ_WAIT_S = 5.0

_decoder = msgspec.json.Decoder(AppLogBatch)


@dataclass(frozen=True)
class AppLogLine:
    """One line of a running app, with where it came from."""

    cursor: int  # the LOGS stream sequence of its batch
    project_id: str
    deployment_id: str
    process: str
    line: LogLine


@dataclass(frozen=True)
class AppLogQuery:
    """Where to start (at most one of `tail`, `since`, `from_cursor`; none: the oldest)."""

    tail: int | None = None
    since: datetime | None = None
    from_cursor: int | None = None


def _lines(cursor: int, batch: AppLogBatch) -> list[AppLogLine]:
    return [
        AppLogLine(cursor, batch.project_id, batch.deployment_id, batch.process, line)
        for line in batch.lines
    ]


@dataclass(frozen=True)
class _Newest:
    seq: int
    stored_at: datetime | None


async def _newest_batch(js: JetStreamContext, subject: str) -> _Newest | None:
    """Where and when the subject's newest batch was stored; None when it has none."""
    try:
        msg = await js.get_last_msg(STREAM_LOGS, subject)
    except NotFoundError:
        return None
    return _Newest(msg.seq or 0, msg.time)


async def _newest(js: JetStreamContext, subject: str) -> int | None:
    """The stream sequence of the subject's newest batch; None when it has none."""
    newest = await _newest_batch(js, subject)
    return None if newest is None else newest.seq


async def _read_range(
    js: JetStreamContext, subject: str, first: int, last: int
) -> list[tuple[int, AppLogBatch]]:
    """The subject's batches with stream sequences in [first, last], oldest first."""
    out: list[tuple[int, AppLogBatch]] = []
    sub = await logstream.subscribe_from(js, subject, first)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=READ_WAIT_S)
            except nats.errors.TimeoutError:
                return out  # nothing newer than what we have: the range is read
            seq = msg.metadata.sequence.stream
            if seq > last:
                return out
            try:
                out.append((seq, _decoder.decode(msg.data)))
            except msgspec.DecodeError as exc:
                log.warning("app_log_batch_undecodable", subject=subject, error=str(exc))
            if seq >= last or msg.metadata.num_pending == 0:
                return out
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def tail_start(js: JetStreamContext, subject: str, tail: int) -> tuple[int, int] | None:
    """Where the last `tail` lines of `subject` begin: (stream sequence of that batch, lines of
    it to skip); None when the subject holds nothing."""
    newest = await _newest(js, subject)
    if newest is None:
        return None
    if tail <= 0:
        return newest + 1, 0
    batches: list[tuple[int, int]] = []  # (stream sequence, lines), oldest first
    upper = newest
    window = FIRST_WINDOW
    while True:
        lower = max(1, upper - window + 1)
        older = [(seq, len(b.lines)) for seq, b in await _read_range(js, subject, lower, upper)]
        batches = older + batches
        if lower == 1 or sum(n for _, n in batches) >= tail:
            break
        upper = lower - 1
        window *= GROWTH
    behind = 0
    for seq, count in reversed(batches):
        behind += count
        if behind >= tail:
            return seq, behind - tail
    return (batches[0][0], 0) if batches else (newest, 0)


async def iter_app_log(
    js: JetStreamContext, project_id: str, query: AppLogQuery, *, follow: bool
) -> AsyncGenerator[list[AppLogLine], None]:
    """The project's app log lines from where `query` says, a batch at a time (see the module
    docstring); without `follow`, up to the newest batch stored when it started."""
    subject = app_log_subject(project_id)
    stop_at = None
    if not follow:
        # Read up to the newest batch there is now, and not at all when nothing would be read
        # (a consumer waiting for a message that is not coming would only time out).
        newest = await _newest_batch(js, subject)
        if newest is None:
            return
        stop_at = newest.seq
        if query.from_cursor is not None and query.from_cursor > stop_at:
            return
        since, stored_at = query.since, newest.stored_at
        if since is not None and stored_at is not None and stored_at < since:
            return
    skip = 0
    start_seq = 1
    start_time = None
    if query.tail == 0 and not follow:
        return
    if query.tail is not None:
        found = await tail_start(js, subject, query.tail)
        if found is not None:
            start_seq, skip = found
        elif not follow:
            return
        else:  # nothing yet: everything from now on
            start_seq = 0
    elif query.from_cursor is not None:
        start_seq = query.from_cursor
    elif query.since is not None:
        start_time = query.since
    if start_seq == 0:
        info = await js.stream_info(STREAM_LOGS)
        start_seq = info.state.last_seq + 1
    resume_at = start_seq
    while True:
        sub = await logstream.subscribe_from(js, subject, resume_at, start_time=start_time)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=logstream.IDLE_RESUBSCRIBE_S)
                except nats.errors.TimeoutError:
                    if stop_at is not None:
                        return  # what was there when we started has been read
                    break  # quiet: a fresh consumer where we were (see the module docstring)
                seq = msg.metadata.sequence.stream
                if stop_at is not None and seq > stop_at:
                    return
                resume_at, start_time = seq + 1, None
                try:
                    batch = _decoder.decode(msg.data)
                except msgspec.DecodeError as exc:
                    log.warning("app_log_batch_undecodable", subject=subject, error=str(exc))
                    continue
                lines = _lines(seq, batch)
                if skip:
                    lines, skip = lines[skip:], 0
                if query.since is not None:
                    lines = [x for x in lines if x.line.ts >= query.since]
                if lines:
                    yield lines
                if stop_at is not None and seq >= stop_at:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
