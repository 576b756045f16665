"""Finished items, stored in batches: one settle request per `interval_s` (100 ms) or per
`max_batch` results (128), whichever comes first, and one at the end.

One request per item would cost a round trip and a transaction each (thousands a second at
high concurrency); a batch costs one. What a crash loses is at most the last `interval_s` of
results: those items are still pending in their rows and are called again on resume — the
price of batching, bounded and small. Batches go one at a time and in order. A settle reply
saying the job is `cancelled` (cancelled through the API meanwhile) calls `on_cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from launchdeck.contracts.messages import GenerationItemResult, GenerationTotals
from launchdeck.generator.checkpoint import Checkpoint

SETTLE_INTERVAL_S = 0.1
SETTLE_BATCH = 128
# A settle request stays well under NATS's default max payload (1 MiB), whatever the outputs.
SETTLE_BATCH_BYTES = 512 * 1024


def approximate_size(result: GenerationItemResult) -> int:
    """Bytes `result` takes on the wire, roughly: its outputs (also in its calls) dominate."""
    return 512 + 2 * sum(len(call.content) for call in result.calls) + len(result.error or "")


class Settler:
    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        on_cancelled: Callable[[], None],
        on_settled: Callable[[], None] = lambda: None,
        on_error: Callable[[BaseException], None] = lambda _exc: None,
        interval_s: float = SETTLE_INTERVAL_S,
        max_batch: int = SETTLE_BATCH,
        max_bytes: int = SETTLE_BATCH_BYTES,
    ) -> None:
        self._checkpoint = checkpoint
        self._on_cancelled = on_cancelled
        self._on_settled = on_settled
        self._on_error = on_error
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._buffer: list[GenerationItemResult] = []
        self._bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.totals: GenerationTotals | None = None  # as of the last settle
        self.settled = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="generation-settler")

    def add(self, result: GenerationItemResult) -> None:
        self._buffer.append(result)
        self._bytes += approximate_size(result)
        if len(self._buffer) >= self._max_batch or self._bytes >= self._max_bytes:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                self._on_error(exc)  # the job stops: nothing more would be stored
                raise
            if self._closing and not self._buffer:
                return

    async def flush(self) -> None:
        """Settle what is buffered, in batches of at most `max_batch` / `max_bytes`."""
        while self._buffer:
            batch: list[GenerationItemResult] = []
            size = 0
            while self._buffer and len(batch) < self._max_batch:
                item_size = approximate_size(self._buffer[0])
                if batch and size + item_size > self._max_bytes:
                    break
                batch.append(self._buffer.pop(0))
                size += item_size
            self._bytes -= size
            reply = await self._checkpoint.settle(batch)
            self.settled += len(batch)
            self._on_settled()
            if reply.totals is not None:
                self.totals = reply.totals
                if reply.totals.status == "cancelled":
                    self._on_cancelled()

    async def close(self) -> None:
        """Settle everything added so far and stop; raises what a settle raised."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            await self.flush()
            return
        await self._task

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
