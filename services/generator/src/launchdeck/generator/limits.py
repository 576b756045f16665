"""How hard the generator leans on a provider: retries with backoff, an adaptive concurrency
limit, and a requests-per-minute pace. Clock and sleep are injectable so tests run fast.

Typical use per item attempt (the limiter wraps each attempt, so a retry waits for a slot):

    result = await with_retries(
        lambda: limiter.run(lambda: paced(rate, lambda: client.chat(request))),
        attempts=3, base_s=settings.retry_base_s,
    )
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from launchdeck.generator.providers.errors import TransientError
from launchdeck.libs.logging import get_logger

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Jitter = Callable[[float], float]

log = get_logger(__name__)


def full_jitter(cap: float) -> float:
    """AWS's "full jitter": uniform in [0, cap], so synchronised failures spread out."""
    return random.uniform(0.0, cap)


def backoff_delay(
    failed_attempt: int,
    error: TransientError,
    *,
    base_s: float,
    max_delay_s: float,
    jitter: Jitter = full_jitter,
) -> float:
    """Delay after the `failed_attempt`-th (1-based) failure: jitter(base·2^(n-1)), capped;
    never shorter than the provider's Retry-After (itself capped)."""
    delay = jitter(min(max_delay_s, base_s * 2 ** (failed_attempt - 1)))
    if error.retry_after_s is not None:
        delay = max(delay, min(error.retry_after_s, max_delay_s))
    return delay


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base_s: float = 5.0,
    max_delay_s: float = 60.0,
    jitter: Jitter = full_jitter,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run `call` up to `attempts` times while it raises `TransientError`; the last one is
    re-raised. `PermanentError` (and anything else) propagates at once: retrying a bad key
    or an unknown model only burns time and budget."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except TransientError as error:
            if attempt == attempts:
                raise
            delay = backoff_delay(
                attempt, error, base_s=base_s, max_delay_s=max_delay_s, jitter=jitter
            )
            log.warning(
                "llm_call_retry",
                attempt=attempt,
                of=attempts,
                delay_s=round(delay, 3),
                status=error.status,
                reason=error.reason,
            )
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Permit:
    """One call's slot; `epoch` is the limiter's epoch when it started (see AdaptiveLimiter)."""

    epoch: int


class AdaptiveLimiter:
    """Concurrency that backs off when the provider is saturated: starts at `max_concurrency`,
    halves on 429/503, grows by 1 after `recover_after` consecutive successes, stays in
    [1, max_concurrency].

    One halving per window: a call only halves the limit if it started after the last halving
    (its permit's epoch is current). A burst of 429s from calls already in flight when the
    limit dropped is the same overload seen again, and halves once — as TCP cuts its window once
    per round trip."""

    def __init__(self, max_concurrency: int, *, recover_after: int = 20) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.recover_after = max(1, recover_after)
        self._limit = max_concurrency
        self._in_flight = 0
        self._epoch = 0
        self._successes = 0
        # FIFO waiters, each granted its slot when woken (one wake-up per freed slot, not a
        # thundering herd re-checking a condition).
        self._waiters: deque[asyncio.Future[int]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> Permit:
        if not self._waiters and self._in_flight < self._limit:
            self._in_flight += 1
            return Permit(self._epoch)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return Permit(await waiter)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before it could be used
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_flight -= 1
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            self._in_flight += 1
            waiter.set_result(self._epoch)

    def succeeded(self, permit: Permit) -> None:
        self._successes += 1
        if self._successes >= self.recover_after and self._limit < self.max_concurrency:
            self._successes = 0
            self._limit += 1
            log.info("llm_concurrency_raised", limit=self._limit)
            self._grant()

    def overloaded(self, permit: Permit) -> None:
        """A 429/503 seen by the call holding `permit`."""
        self._successes = 0
        if permit.epoch != self._epoch:
            return
        self._epoch += 1
        new_limit = max(1, self._limit // 2)
        if new_limit != self._limit:
            self._limit = new_limit
            log.warning("llm_concurrency_halved", limit=self._limit)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Permit]:
        permit = await self.acquire()
        try:
            yield permit
        finally:
            self.release()

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` in a slot, its outcome fed back: success counts toward recovery, a
        `TransientError` with 429/503 halves (then propagates)."""
        async with self.slot() as permit:
            try:
                result = await call()
            except TransientError as error:
                if error.overload:
                    self.overloaded(permit)
                raise
            self.succeeded(permit)
            return result


class RateLimiter:
    """Requests per minute as a token bucket: `burst` calls may go at once, then one every
    60/per_minute seconds. Waiters are served in arrival order."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._rate_per_s = per_minute / 60.0
        self._capacity = float(max(1, burst))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate_per_s)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self._rate_per_s)


async def paced(rate: RateLimiter | None, call: Callable[[], Awaitable[T]]) -> T:
    """`call` after a token from `rate` (no pacing when the job sets no requests-per-minute)."""
    if rate is not None:
        await rate.acquire()
    return await call()
