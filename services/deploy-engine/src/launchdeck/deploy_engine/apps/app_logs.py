"""Apps' output on its way to the LOGS stream: masked, numbered, batched, never blocking the app.

Each process of a deployment (`web`, `worker`, … and the `release` command) writes through its
own `AppOutput`: every line has the deployment's env var values replaced by `***`
(`libs.masking`, the build log's masker) before anything else sees it — the stream, the tail kept
for error messages, the engine's own log —, is cut at 16 KiB, gets the next `seq` of its
deployment and process, and joins a batch. A batch (`AppLogBatch`: one deployment and process)
is sent when 100 lines or 256 KiB wait or its oldest line is 5 ms old, to
`ld.logs.app.<project id>`, by the engine's one sender, in order, with `Nats-Msg-Id`
`<deployment>:<process>:<first seq>` so a retried publish is stored once.

NATS away: the sender retries the batch at the head of the queue until NATS takes it; meanwhile
at most `buffer_lines` lines wait, and further output is counted and dropped (no seq), and once
there is room again one system line says how many lines were not recorded and why. The app
never waits for NATS: `write` is synchronous and cheap.

Line numbers survive the engine: a deployment's process may outlive the engine that started it
(the next one adopts it), or be started again by a later engine, and its numbering goes on where
it was. Numbers are handed out in blocks of `SEQ_BLOCK` whose end is written to
`apps/.seq/<deployment>.<process>` first, so an engine killed mid-block leaves a jump in the
numbers (the lines it had not sent are lost with it), never a number used twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import AppLogBatch, LogLine, LogStream
from launchdeck.contracts.subjects import STREAM_LOGS, app_log_subject
from launchdeck.libs.logging import get_logger
from launchdeck.libs.masking import make_masker
from launchdeck.libs.outage import Outage
from launchdeck.libs.publish import NatsUnavailable, publish_once_by_id

log = get_logger(__name__)

BATCH_LINES = 100
BATCH_BYTES = 256 * 1024
BATCH_AGE_S = 0.005
MAX_LINE_CHARS = 16 * 1024
BUFFER_LINES = 10_000
SEQ_BLOCK = 1000
TAIL_LINES = 20  # what an error message quotes of an app's output
HELD_LINES = 2_000  # lines of an adopted process held while its secrets are being fetched
RETRY_WINDOW_S = 30.0  # one `publish_once_by_id` call's patience; the sender then tries again
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class _Sequence:
    """Line numbers of one deployment's process, handed out in blocks recorded on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.reserved = int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            self.reserved = 0
        self.last = self.reserved  # numbering goes on after whatever a predecessor reserved

    def next(self) -> int:
        self.last += 1
        if self.last > self.reserved:
            self.reserved = self.last + SEQ_BLOCK - 1
            with contextlib.suppress(OSError):  # best effort: numbers may repeat after a crash
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(str(self.reserved))
                os.replace(tmp, self.path)
        return self.last


class AppOutput:
    """One process's output (see the module docstring). Create it inside the running loop."""

    def __init__(
        self,
        logs: AppLogs,
        *,
        project_id: str,
        deployment_id: str,
        process: str,
        secrets: Iterable[str] | None = (),
    ) -> None:
        """`secrets` None: the values to mask are not known yet (a process adopted from a
        previous engine, whose env vars are still being fetched): its lines are held in memory,
        unsent, until `set_secrets` (or dropped, after `withhold`)."""
        self._logs = logs
        self.project_id = project_id
        self.deployment_id = deployment_id
        self.process = process
        self._mask = make_masker(secrets or ())
        self._held: collections.deque[tuple[LogStream, str]] | None = (
            None if secrets is not None else collections.deque(maxlen=HELD_LINES)
        )
        self._withheld: str | None = None
        self._seq = logs.sequence(deployment_id, process)
        self._lines: list[LogLine] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._dropped = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on; lines held until now go out, masked."""
        self._mask = make_masker(secrets)
        self._withheld = None
        held, self._held = self._held, None
        for stream, text in held or ():
            self.write(stream, text)

    def withhold(self, reason: str) -> None:
        """The values to mask cannot be known: record none of the output (it could hold them)."""
        self._held = None
        if self._withheld is None:
            self._withheld = reason
            self._append(
                "system", f"✂ The {self.process} process's output is not recorded: {reason}"
            )

    def mask(self, text: str) -> str:
        return self._mask(text) if self._mask is not None else text

    def write(self, stream: LogStream, text: str) -> None:
        """One line of the app's output (or a system line of the engine's about it)."""
        if self._held is not None:
            self._held.append((stream, text))  # unmasked: in memory only, until set_secrets
            return
        if self._withheld is not None:
            return
        text = self.mask(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " … [line truncated]"
        if stream != "system":
            self.tail.append(text)
        if not self._logs.has_room():
            self._dropped += 1
            return
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._append(
                "system",
                f"✂ {dropped} line(s) were not recorded: the log stream was unavailable "
                f"(at most {self._logs.buffer_lines} unsent lines are kept)",
            )
        self._append(stream, text)

    def system(self, text: str) -> None:
        self.write("system", text)

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    def _append(self, stream: LogStream, text: str) -> None:
        line = LogLine(seq=self._seq.next(), ts=datetime.now(UTC), stream=stream, line=text)
        self._lines.append(line)
        self._bytes += len(text) + 1
        self._logs.pending += 1
        if len(self._lines) >= BATCH_LINES or self._bytes >= BATCH_BYTES:
            self.cut()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_AGE_S, self.cut)

    def cut(self) -> None:
        """Hand the waiting lines to the sender."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines, self._bytes = self._lines, [], 0
        batch = AppLogBatch(
            project_id=self.project_id,
            deployment_id=self.deployment_id,
            process=self.process,
            lines=lines,
        )
        msg_id = f"{self.deployment_id}:{self.process}:{lines[0].seq}"
        self._logs.enqueue(app_log_subject(self.project_id), msg_id, encode(batch), len(lines))


class AppLogs:
    """The engine's one sender of app logs (and the keeper of their line numbers)."""

    def __init__(
        self, js: JetStreamContext, seq_dir: Path, *, buffer_lines: int = BUFFER_LINES
    ) -> None:
        self._js = js
        self.seq_dir = seq_dir
        self.buffer_lines = buffer_lines
        self.pending = 0  # lines written and not stored yet
        self._sequences: dict[tuple[str, str], _Sequence] = {}
        self._queue: collections.deque[tuple[str, str, bytes, int]] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._outage = Outage("nats", stream=STREAM_LOGS, what_for="app logs")
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name="app-logs")

    def sequence(self, deployment_id: str, process: str) -> _Sequence:
        key = (deployment_id, process)
        if key not in self._sequences:
            name = SAFE_NAME.sub("_", f"{deployment_id}.{process}")
            self._sequences[key] = _Sequence(self.seq_dir / name)
        return self._sequences[key]

    def forget(self, deployment_id: str, process: str) -> None:
        """The deployment's process will not run again: drop its numbering."""
        sequence = self._sequences.pop((deployment_id, process), None)
        if sequence is not None:
            sequence.path.unlink(missing_ok=True)

    def has_room(self) -> bool:
        return self.pending < self.buffer_lines

    def enqueue(self, subject: str, msg_id: str, payload: bytes, lines: int) -> None:
        self._queue.append((subject, msg_id, payload, lines))
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything enqueued is stored (True), at most `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        return False

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                subject, msg_id, payload, lines = self._queue[0]
                try:
                    await publish_once_by_id(
                        self._js,
                        subject,
                        payload,
                        msg_id=msg_id,
                        deadline=time.monotonic() + RETRY_WINDOW_S,
                        what="app log lines",
                        outage=self._outage,
                    )
                except NatsUnavailable:
                    continue  # still away: the same batch again (the outage is logged once)
                except Exception as exc:
                    # Refused for good (a missing stream, a permission): these lines are lost,
                    # the next ones may not be.
                    log.warning("app_log_batch_dropped", error=str(exc), lines=lines)
                self._queue.popleft()
                self.pending -= lines
            self._idle.set()

    async def close(self) -> None:
        """Send what is queued (briefly), then stop the sender."""
        await self.flush(2.0)
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None
