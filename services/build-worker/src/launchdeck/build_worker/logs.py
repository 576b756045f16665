"""A build's log on its way to the LOGS stream: numbered, masked, capped and batched.

Every line gets the next per-build `seq` (1, 2, 3, … across attempts: a redelivered build
continues after the last line already stored). Lines are collected into `LogBatch` messages,
sent when 100 lines (or 256 KiB) are waiting or the oldest waiting line is 5 ms old, by one
sender task, strictly in order, each with `Nats-Msg-Id` `<build_id>:<first seq>` so a retried
publish is stored once. `write` is synchronous and cheap (no await per line); only the sender
talks to NATS.

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
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import LogBatch, LogLine, LogStream
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.libs.outage import Outage
from launchdeck.libs.publish import publish_once_by_id, until_deadline

BATCH_LINES = 100
BATCH_BYTES = 256 * 1024
BATCH_AGE_S = 0.005
MAX_LINE_CHARS = 16 * 1024
MASK = "***"
MIN_SECRET_LEN = 3  # masking one- or two-character values would shred every line
BUFFER_LINES = 10_000  # unsent lines held while NATS is away (LAUNCHDECK_LOG_BUFFER_LINES)
DEFAULT_DEADLINE_S = 300.0  # without a deadline from the caller: this long after creation


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


def make_masker(secrets: Iterable[str]) -> Callable[[str], str] | None:
    """A function replacing every secret value with `***`, or None when there is nothing to mask."""
    values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
    if not values:
        return None
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return lambda line: pattern.sub(MASK, line)


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

    # --- the per-line path: synchronous, no allocation beyond the line itself ---------------

    def write(self, stream: LogStream, text: str) -> None:
        """Queue one line of the build's output (or a system line)."""
        if self._closed:
            return
        if self._capped and stream != "system":
            self._dropped_lines += 1
            self._dropped_bytes += len(text)
            return
        if stream != "system" and (self._gap_lines or self._buffered >= self._buffer_lines):
            # NATS is not taking the log: held lines are at the bound. Counted, no seq.
            self._gap_lines += 1
            return
        if self._gap_lines:
            # A system line (the worker's own, a handful per build: exempt from the bound)
            # while output is being dropped: the gap is explained before it.
            self._explain_gap()
        if self._mask is not None:
            text = self._mask(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " … [line truncated]"
        size = len(text.encode()) + 1
        if stream != "system":
            if self._total_bytes + size > self._max_bytes:
                self._capped = True
                self._dropped_lines += 1
                self._dropped_bytes += size
                self._append(
                    "system",
                    f"✂ Log limit of {human_size(self._max_bytes)} reached: further output of this "
                    "build is not recorded (the build continues)",
                    0,
                )
                return
            self._total_bytes += size
        self._append(stream, text, size)

    def system(self, text: str) -> None:
        self.write("system", text)

    def _append(self, stream: LogStream, text: str, size: int) -> None:
        self._seq += 1
        self._lines.append(LogLine(seq=self._seq, ts=datetime.now(UTC), stream=stream, line=text))
        self._buffered += 1
        self._batch_bytes += size
        if len(self._lines) >= BATCH_LINES or self._batch_bytes >= BATCH_BYTES:
            self._cut()
        elif self._timer is None:
            self._timer = self._loop.call_later(BATCH_AGE_S, self._cut)

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
