"""A run's output on its way to `ld.logs.run.<run>`: masked, numbered, batched, never blocking it.

Every line has the project's env var values replaced by `***` (`libs.masking`, the masker of
build and app logs) before anything else sees it, is cut at 16 KiB, gets the run's next `seq`
and joins the pending lines. One sender task publishes them in order as `RunLogBatch`es (up to
500 lines or 256 KiB each, `Nats-Msg-Id` `<run>:<first seq>`, so a retried publish is stored
once); `close` sends what is left and the eof batch with the run's final status. A command
printing faster than NATS stores its log never waits: past `buffer_lines` unsent lines its output
is counted and dropped, and one system line says how many lines were not recorded.

The last seq stored is written to `<run dir>/seq` after each batch, so a later attempt of the
same run (the engine died while it ran) numbers its lines on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import LogLine, LogStream, RunLogBatch
from launchdeck.contracts.statuses import RunStatus
from launchdeck.contracts.subjects import run_log_subject
from launchdeck.libs.masking import make_masker

# (subject, payload, Nats-Msg-Id): stored once, or raises when it cannot be (the caller's
# deadline passed). The NATS one is `libs.publish.publish_once_by_id`.
Publish = Callable[[str, bytes, str], Awaitable[None]]

BATCH_LINES = 500
BATCH_BYTES = 256 * 1024
BATCH_AGE_S = 0.005  # the sender waits this long for more lines before it publishes
MAX_LINE_CHARS = 16 * 1024
BUFFER_LINES = 10_000
SEQ_FILE = "seq"


def stored_seq(run_dir: Path) -> int:
    """The last seq an earlier attempt of the run stored (0: none)."""
    try:
        return int((run_dir / SEQ_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


class RunOutput:
    """One run's log (module docstring). Create it inside the running loop."""

    def __init__(
        self,
        publish: Publish,
        run_id: str,
        *,
        run_dir: Path,
        attempt: int = 1,
        secrets: Iterable[str] = (),
        buffer_lines: int = BUFFER_LINES,
    ) -> None:
        self._publish = publish
        self.run_id = run_id
        self.run_dir = run_dir
        self.attempt = attempt
        self.buffer_lines = buffer_lines
        self._mask = make_masker(secrets)
        self._seq = stored_seq(run_dir)
        self._pending: list[LogLine] = []
        self._dropped = 0
        self._wake = asyncio.Event()
        self._closing = False
        self.error: BaseException | None = None  # why the sender stopped (NATS gave up)
        self._sender = asyncio.create_task(self._send_loop(), name=f"run-log-{run_id}")

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self._mask = make_masker(secrets)

    def write(self, stream: LogStream, text: str) -> None:
        """One line of the command's output (or a system line of the engine's about it)."""
        if self._mask is not None:
            text = self._mask(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " … [line truncated]"
        if len(self._pending) >= self.buffer_lines:
            self._dropped += 1
            return
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._append(
                "system",
                f"✂ {dropped} line(s) were not recorded: the log stream was not keeping up "
                f"(at most {self.buffer_lines} unsent lines are kept)",
            )
        self._append(stream, text)

    def system(self, text: str) -> None:
        self.write("system", text)

    def _append(self, stream: LogStream, text: str) -> None:
        self._seq += 1
        self._pending.append(LogLine(seq=self._seq, ts=datetime.now(UTC), stream=stream, line=text))
        self._wake.set()

    def _take(self) -> list[LogLine]:
        size = 0
        for count, line in enumerate(self._pending, 1):
            size += len(line.line) + 64
            if count >= BATCH_LINES or size >= BATCH_BYTES:
                break
        else:
            count = len(self._pending)
        taken, self._pending = self._pending[:count], self._pending[count:]
        return taken

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                if not self._closing:
                    await asyncio.sleep(BATCH_AGE_S)  # let a burst fill the batch
                self._wake.clear()
                while self._pending:
                    lines = self._take()
                    await self._send(
                        RunLogBatch(run_id=self.run_id, attempt=self.attempt, lines=lines)
                    )
                if self._closing:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc

    async def _send(self, batch: RunLogBatch, *, msg_id: str | None = None) -> None:
        first = batch.lines[0].seq if batch.lines else self._seq
        await self._publish(
            run_log_subject(self.run_id), encode(batch), msg_id or f"{self.run_id}:{first}"
        )
        if batch.lines:
            self._save_seq(batch.lines[-1].seq)

    def _save_seq(self, seq: int) -> None:
        with contextlib.suppress(OSError):  # best effort: a later attempt's lines may repeat
            tmp = self.run_dir / f".{SEQ_FILE}.tmp"
            tmp.write_text(str(seq))
            os.replace(tmp, self.run_dir / SEQ_FILE)

    async def close(self, status: RunStatus) -> None:
        """Send what is left and the eof batch carrying `status`; raises what stopped the
        sender (the log is then incomplete)."""
        self._closing = True
        self._wake.set()
        await self._sender
        if self.error is not None:
            raise self.error
        eof = RunLogBatch(run_id=self.run_id, attempt=self.attempt, eof=True, status=status)
        await self._send(eof, msg_id=f"{self.run_id}:eof")

    async def abandon(self) -> None:
        """Stop sending (the engine is stopping): what is unsent is lost."""
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)
