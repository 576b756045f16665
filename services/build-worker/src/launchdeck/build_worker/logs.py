"""A build's log on its way to the LOGS stream: numbered, masked, capped and batched.

Secret values (the project's env vars, a password in the repository URL, the git token) are
masked with `libs.masking` — the same masker as app logs — before a line gets its seq.

Every line gets the next per-build `seq` (1, 2, 3, … across attempts: a redelivered build
continues after the last line already stored). Lines are collected into `LogBatch` messages,
sent when 100 lines (or 256 KiB) are waiting or the oldest waiting line is 5 ms old, by one
sender task, strictly in order, each with `Nats-Msg-Id` `<build_id>:<first seq>` so a retried
publish is stored once. While a batch is being sent the next one keeps growing (up to
`MAX_BATCH_LINES` or 256 KiB) and goes as soon as the sender is free: idle, a line leaves within
5 ms; under a burst, batches grow with the backlog, so one publish round trip carries more lines
instead of the burst waiting for a round trip per 100 lines. Writing is synchronous and cheap (no
await per line, one pass over the lines of each read of the build's output, which share one
timestamp); only the sender talks to NATS.

A build printing faster than NATS stores its log is slowed down rather than cut short: the
reader of its output hands each read to `write_output`, which, once `buffer_lines` are waiting,
has it wait for the sender (the build then waits on its full pipe). Only when the sender makes
no progress at all (one batch unsent for `STALLED_SEND_S`: NATS is away) does the build run on
and lose output, as below.

NATS away for a while (a restart, a cluster electing a leader) neither hangs nor loses the log
silently. The sender retries each batch through the outage until the build's deadline
(`libs.publish`); meanwhile at most `buffer_lines` unsent lines are held, and output past that is
counted and dropped (no seq, so the numbering stays gap-free). When sending resumes, a system line
takes the next seq exactly where the dropped lines were and says how many and why. If the
deadline passes, the sender stops and `flush`/`close` raise `LogPublishError` at once (nothing
waits for a sender that is gone), which fails the attempt; the next attempt continues the log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import LogBatch, LogLine, LogStream
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.libs.masking import make_masker
from launchdeck.libs.outage import Outage
from launchdeck.libs.publish import publish_once_by_id, until_deadline

BATCH_LINES = 100
MAX_BATCH_LINES = 2000  # while the sender is busy, the next batch grows up to this
BATCH_BYTES = 256 * 1024
BATCH_AGE_S = 0.005
MAX_LINE_CHARS = 16 * 1024
BUFFER_LINES = 10_000  # unsent lines held while NATS is away (LAUNCHDECK_LOG_BUFFER_LINES)
DEFAULT_DEADLINE_S = 300.0  # without a deadline from the caller: this long after creation
# A batch unsent this long means NATS is not taking the log (an outage), not merely slower than
# the build: the build's output is no longer held back for it (`write_output`).
STALLED_SEND_S = 1.0


class LogPublishError(RuntimeError):
    """The log could not be written to NATS (an infrastructure failure, not the build's)."""


@dataclass(frozen=True)
class LogTail:
    """What the LOGS stream already holds for a build (from earlier attempts)."""

    last_seq: int
    finished: bool  # a batch with eof=True was stored: the build already reported its end
    status: BuildStatus | None
    last_line: LogLine | None = None  # the last line stored (how the previous attempt ended)


async def read_log_tail(
    js: JetStreamContext, build_id: str, *, deadline: float | None = None
) -> LogTail:
    """The end of a build's stored log; with `deadline` (`time.monotonic()`), retried through a
    NATS outage until then (`libs.publish.until_deadline`)."""

    async def read(_timeout_s: float = 0.0) -> LogTail:  # nats-py's own request timeout
        try:
            last = await js.get_last_msg(STREAM_LOGS, build_log_subject(build_id))
        except NotFoundError:
            return LogTail(last_seq=0, finished=False, status=None)
        batch = decode(last.data or b"", LogBatch)
        line = batch.lines[-1] if batch.lines else None
        return LogTail(
            last_seq=line.seq if line is not None else 0,
            finished=batch.eof,
            status=batch.status,
            last_line=line,
        )

    if deadline is None:
        return await read()
    return await until_deadline(read, js=js, deadline=deadline, what="the build log's end")


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


class LogPublisher:
    """One build attempt's log writer. Create it inside the running event loop."""

    def __init__(
        self,
        js: JetStreamContext,
        build_id: str,
        *,
        attempt: int,
        first_seq: int = 1,
        max_bytes: int = 10 * 1024 * 1024,
        secrets: Iterable[str] = (),
        buffer_lines: int = BUFFER_LINES,
        deadline: Callable[[], float] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        """`deadline()`: until when (`time.monotonic()`) a batch may wait for NATS, asked per
        batch (a build's limit can change once its config is read); `on_sent`: called after each
        stored batch (the job's progress, for the watchdog)."""
        self._js = js
        self._build_id = build_id
        self._subject = build_log_subject(build_id)
        self._attempt = attempt
        self._seq = first_seq - 1
        self._max_bytes = max_bytes
        self._secrets = list(secrets)
        self._mask = make_masker(self._secrets)
        self._loop = asyncio.get_running_loop()
        self._lines: list[LogLine] = []
        self._batch_bytes = 0
        self._total_bytes = 0  # stdout/stderr bytes accepted (system lines are not counted)
        self._capped = False
        self._dropped_lines = 0
        self._dropped_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._buffer_lines = buffer_lines
        self._buffered = 0  # lines written and not stored yet: the current batch + the queue
        self._gap_lines = 0  # lines dropped (no seq) since the buffer filled up
        created = time.monotonic()
        self._deadline = deadline or (lambda: created + DEFAULT_DEADLINE_S)
        self._on_sent = on_sent
        self._outage = Outage("nats", build_id=build_id, stream=STREAM_LOGS)
        self._sending_since: float | None = None  # when the batch being sent was first tried
        # (first seq, line count, encoded LogBatch), oldest first
        self._queue: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, or the sender is gone: never waits forever
        self._idle.set()
        self._room = asyncio.Event()  # fewer than `buffer_lines` waiting (`write_output`)
        self._room.set()
        self._ts: datetime | None = None  # the timestamp of this turn of the event loop
        self._error: BaseException | None = None  # why the sender stopped
        self._closed = False
        self._sender = asyncio.create_task(self._send_loop())

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask more values from now on (e.g. a password found in the repository URL)."""
        self._secrets.extend(secrets)
        self._mask = make_masker(self._secrets)

    def mask(self, text: str) -> str:
        """`text` with every secret value replaced (for messages that leave by other routes)."""
        return self._mask(text) if self._mask is not None else text

    # --- the per-line path: synchronous, no allocation beyond the lines themselves ---------

    def write_output(self, stream: LogStream, lines: list[str]) -> Awaitable[None] | None:
        """The `OutputSink` of `run_command`: the lines of one read of the build's output.
        None when all were taken; while `buffer_lines` wait for a sender that is making
        progress, an awaitable that takes the rest as room frees up (backpressure: the reader
        waits, and the build on its pipe, rather than lines being lost)."""
        taken = self._take(stream, lines, 0, hold=True)
        return None if taken == len(lines) else self._take_later(stream, lines, taken)

    async def _take_later(self, stream: LogStream, lines: list[str], start: int) -> None:
        while start < len(lines):
            await self._wait_for_room()
            # Still no room: the wait gave up (NATS is away), and the rest is counted and dropped.
            start = self._take(stream, lines, start, hold=self._buffered < self._buffer_lines)

    async def _wait_for_room(self) -> None:
        while self._buffered >= self._buffer_lines and self._error is None and not self._closed:
            since = self._sending_since
            left = STALLED_SEND_S if since is None else since + STALLED_SEND_S - time.monotonic()
            if left <= 0:
                return  # NATS is away: what comes meanwhile is counted and dropped
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), left)

    def write(self, stream: LogStream, text: str) -> None:
        """Queue one line: a system line, or a line of output taken at once (never held back)."""
        if stream != "system":
            self._take(stream, [text], 0, hold=False)
            return
        if self._closed:
            return
        if self._gap_lines:
            # A system line (the worker's own, a handful per build: exempt from the bound)
            # while output is being dropped: the gap is explained before it.
            self._explain_gap()
        if self._mask is not None:
            text = self._mask(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " … [line truncated]"
        self._append("system", text, len(text.encode()) + 1)

    def system(self, text: str) -> None:
        self.write("system", text)

    def _take(self, stream: LogStream, lines: list[str], start: int, *, hold: bool) -> int:
        """Number, mask, cap and batch the output lines `lines[start:]`; returns where it
        stopped: at their end, or, with `hold`, at the first line the buffer has no room for."""
        end = len(lines)
        if self._closed:
            return end
        ts = self._now()
        i = start
        while i < end:
            if self._capped:
                rest = lines[i:]
                self._dropped_lines += len(rest)
                self._dropped_bytes += sum(len(text) for text in rest)
                return end
            room = self._buffer_lines - self._buffered
            if self._gap_lines or room <= 0:
                if hold and not self._gap_lines and self._error is None:
                    return i  # the caller waits for room (`write_output`)
                # NATS is not taking the log: held lines are at the bound. Counted, no seq.
                self._gap_lines += end - i
                return end
            i = self._add(stream, lines, i, min(end, i + room), ts)
        return end

    def _add(self, stream: LogStream, lines: list[str], i: int, stop: int, ts: datetime) -> int:
        """Add `lines[i:stop]` to the current batch, up to where the batch is cut (or the log's
        size cap); returns the index of the first line not added. The hot path of a build's
        log: one tight loop over locals, no call per line but the masker's."""
        mask = self._mask
        seq, total, max_bytes = self._seq, self._total_bytes, self._max_bytes
        batch, batch_bytes = self._lines, self._batch_bytes
        waiting = len(batch)
        # 100 lines go at once while the sender is free (nothing queued); else the batch grows.
        cut_at = MAX_BATCH_LINES if self._queue else BATCH_LINES
        first, size, capped = i, 0, False
        while i < stop:
            text = lines[i]
            if mask is not None:
                text = mask(text)
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + " … [line truncated]"
            size = (len(text) if text.isascii() else len(text.encode())) + 1
            if total + size > max_bytes:
                capped = True
                break
            total += size
            seq += 1
            i += 1
            batch.append(LogLine(seq=seq, ts=ts, stream=stream, line=text))
            batch_bytes += size
            waiting += 1
            if waiting >= cut_at or batch_bytes >= BATCH_BYTES:
                break
        self._seq, self._total_bytes, self._batch_bytes = seq, total, batch_bytes
        self._buffered += i - first
        if capped:
            self._capped = True
            self._dropped_lines += 1
            self._dropped_bytes += size
            self._append(
                "system",
                f"✂ Log limit of {human_size(max_bytes)} reached: further output of this build "
                "is not recorded (the build continues)",
                0,
            )
            return i + 1
        if waiting >= cut_at or batch_bytes >= BATCH_BYTES:
            self._cut()
        elif self._timer is None and waiting:
            self._timer = self._loop.call_later(BATCH_AGE_S, self._cut_when_free)
        return i

    def _now(self) -> datetime:
        """One timestamp per turn of the event loop: the lines of one read of the build's
        output arrived together (and `datetime.now` per line is the dearest part of `write`)."""
        ts = self._ts
        if ts is None:
            ts = self._ts = datetime.now(UTC)
            self._loop.call_soon(self._forget_ts)
        return ts

    def _forget_ts(self) -> None:
        self._ts = None

    def _append(self, stream: LogStream, text: str, size: int) -> None:
        self._seq += 1
        self._lines.append(LogLine(seq=self._seq, ts=self._now(), stream=stream, line=text))
        self._buffered += 1
        self._batch_bytes += size
        waiting = len(self._lines)
        full = self._batch_bytes >= BATCH_BYTES or waiting >= MAX_BATCH_LINES
        if full or (waiting >= BATCH_LINES and not self._queue):  # (not queue: sender is free)
            self._cut()
        elif self._timer is None:
            self._timer = self._loop.call_later(BATCH_AGE_S, self._cut_when_free)

    def _cut_when_free(self) -> None:
        """The oldest waiting line is `BATCH_AGE_S` old: its batch goes, or, while the sender is
        busy, goes with whatever follows it as soon as the sender is free."""
        self._timer = None
        if not self._queue:
            self._cut()

    def _explain_gap(self) -> None:
        """The system line standing where output was dropped: how many lines, and why."""
        dropped, self._gap_lines = self._gap_lines, 0
        since = self._sending_since
        stuck_s = time.monotonic() - since if since is not None else 0.0
        why = (
            f"the log stream was unavailable for {stuck_s:.0f}s"
            if stuck_s >= 1
            else "the log stream could not keep up with the output"
        )
        lines = "1 line was" if dropped == 1 else f"{dropped} lines were"
        self._append(
            "system",
            f"✂ {lines} not recorded: {why} (at most {self._buffer_lines} unsent lines are kept)",
            0,
        )

    def _cut(self, *, eof: bool = False, status: BuildStatus | None = None) -> None:
        """Close the current batch and hand it to the sender."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines and not eof:
            return
        lines, self._lines, self._batch_bytes = self._lines, [], 0
        first = lines[0].seq if lines else self._seq + 1
        batch = LogBatch(
            build_id=self._build_id, attempt=self._attempt, lines=lines, eof=eof, status=status
        )
        self._queue.append((first, len(lines), encode(batch)))
        if self._error is None:  # a sender that is gone will never set it again
            self._idle.clear()
        self._wake.set()

    # --- the sender: the only code that awaits NATS --------------------------------------

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    first, count, payload = self._queue[0]
                    self._sending_since = time.monotonic()
                    await publish_once_by_id(
                        self._js,
                        self._subject,
                        payload,
                        msg_id=f"{self._build_id}:{first}",
                        deadline=self._deadline(),
                        what=f"the build log from line {first}",
                        outage=self._outage,
                    )
                    self._queue.popleft()
                    self._buffered -= count
                    if self._buffered < self._buffer_lines:
                        self._room.set()
                    if not self._queue and self._lines:
                        self._cut()  # what gathered while this batch was sent goes next
                    if self._gap_lines:
                        self._explain_gap()  # room again: the marker takes the next seq
                        self._cut()
                    self._sending_since = None
                    if self._on_sent is not None:
                        self._on_sent()
                self._idle.set()
        except Exception as exc:
            self._stop(exc)

    def _stop(self, error: BaseException) -> None:
        """The sender is gone: wake every waiter with the reason; drop what cannot be sent."""
        self._error = self._error or error
        self._queue.clear()
        self._buffered = len(self._lines)
        self._idle.set()
        self._room.set()

    async def flush(self) -> None:
        """Send everything written so far; raises LogPublishError if it cannot be (NATS refused
        it, or stayed away past the deadline) — at once once the sender has stopped."""
        self._cut()
        await self._idle.wait()
        if self._error is not None:
            raise LogPublishError(f"build log could not be published: {self._error}") from (
                self._error
            )

    async def close(self, status: BuildStatus) -> None:
        """Send the rest and the final batch (eof, with the build's final status)."""
        try:
            if self._gap_lines:
                await self.flush()  # dropped lines are explained (once NATS is back) before the end
            if self._dropped_lines:
                self.system(
                    f"✂ {self._dropped_lines} line(s), {human_size(self._dropped_bytes)} of "
                    f"output were not recorded (log limit {human_size(self._max_bytes)})"
                )
            self._cut(eof=True, status=status)
            self._closed = True
            await self.flush()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the sender without sending what is still queued (clean-up after a failure)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)
        self._stop(LogPublishError("the log publisher was closed"))
