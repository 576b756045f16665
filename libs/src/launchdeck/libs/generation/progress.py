"""Progress of a job, and how often to publish it.

`ProgressTracker` counts finished items (done, failed), tokens and cost, measures the rate over
a sliding window (`window_s`, 30 s by default: recent enough to follow a change of pace, long
enough not to jump with each item) and derives an ETA (remaining items / rate). `should_emit`
throttles events to at most `max_per_s` per second (4 by default) however fast items finish,
only when something changed, and always lets the final state (every item finished) out at once.
A change held back by the throttle goes out on the next `should_emit` call after the interval:
the caller calls it after each `record` and on a periodic tick (every 1 / max_per_s s), so the
last state before a lull is not lost. Times are a monotonic clock passed in (`time.monotonic()`),
so tests need no sleeps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from launchdeck.libs.generation.pricing import ZERO

Outcome = Literal["done", "failed"]
BUCKET_S = 0.25  # completions within one bucket are one entry: the window stays small at any rate


@dataclass(frozen=True)
class ProgressSnapshot:
    done: int
    failed: int
    total: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    items_per_s: float
    eta_s: float | None  # None while no rate is known, 0 when finished

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


class ProgressTracker:
    """`done`, `failed`, tokens and cost may start from a resumed job's counts; the rate counts
    only what this tracker saw finish since `started_at`."""

    def __init__(
        self,
        total: int,
        *,
        started_at: float,
        done: int = 0,
        failed: int = 0,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: Decimal = ZERO,
        window_s: float = 30.0,
        max_per_s: float = 4.0,
    ) -> None:
        if total < 0 or window_s <= 0 or max_per_s <= 0:
            raise ValueError("total ≥ 0, window_s > 0 and max_per_s > 0")
        self.total = total
        self.done = done
        self.failed = failed
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.cost_usd = cost_usd
        self.window_s = window_s
        self.min_interval_s = 1.0 / max_per_s
        self._started_at = started_at
        self._window: deque[tuple[int, int]] = deque()  # (bucket number, items finished)
        self._last_emit: float | None = None
        self._changed = True  # the initial state is worth one event
        self._final_sent = False

    def record(
        self,
        outcome: Outcome,
        *,
        now: float,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: Decimal = ZERO,
    ) -> None:
        """One item finished (`done` or `failed`) with what it used."""
        if outcome == "done":
            self.done += 1
        else:
            self.failed += 1
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += cost_usd
        bucket = int((now - self._started_at) // BUCKET_S)
        if self._window and self._window[-1][0] == bucket:
            self._window[-1] = (bucket, self._window[-1][1] + 1)
        else:
            self._window.append((bucket, 1))
        self._changed = True

    def _rate(self, now: float) -> float:
        horizon = now - self.window_s
        while self._window and self._started_at + (self._window[0][0] + 1) * BUCKET_S <= horizon:
            self._window.popleft()
        span = min(self.window_s, now - self._started_at)
        if span <= 0:
            return 0.0
        return sum(count for _, count in self._window) / span

    def snapshot(self, now: float) -> ProgressSnapshot:
        rate = self._rate(now)
        remaining = max(0, self.total - self.done - self.failed)
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return ProgressSnapshot(
            done=self.done,
            failed=self.failed,
            total=self.total,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
            items_per_s=rate,
            eta_s=eta,
        )

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total

    def should_emit(self, now: float) -> bool:
        """Whether to publish a snapshot now; True marks it as published."""
        if self.finished and not self._final_sent:
            emit = True
            self._final_sent = True
        elif not self._changed:
            emit = False
        else:
            emit = self._last_emit is None or now - self._last_emit >= self.min_interval_s
        if emit:
            self._last_emit = now
            self._changed = False
        return emit
