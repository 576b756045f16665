"""Retries, the adaptive concurrency limit and the requests-per-minute pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from launchdeck.generator.limits import (
    AdaptiveLimiter,
    RateLimiter,
    backoff_delay,
    full_jitter,
    paced,
    with_retries,
)
from launchdeck.generator.providers import (
    ChatRequest,
    ChatResult,
    OpenAIClient,
    PermanentError,
    TransientError,
    open_session,
)
from tests.fake_llm import FakeLLM


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with open_session(16) as session:
        yield session


def ask(prompt: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": prompt}])


# -- retries


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    """base·2^(n-1) capped at max_delay_s; full jitter draws within [0, that]; Retry-After is a
    floor (itself capped)."""
    error = TransientError("x")
    top = [
        backoff_delay(n, error, base_s=5, max_delay_s=30, jitter=lambda c: c) for n in (1, 2, 3, 4)
    ]
    assert top == [5, 10, 20, 30]
    assert all(0 <= backoff_delay(3, error, base_s=5, max_delay_s=30) <= 20 for _ in range(200))
    assert 0 <= full_jitter(1.0) <= 1.0
    slow = TransientError("x", status=429, retry_after_s=100)
    assert backoff_delay(1, slow, base_s=5, max_delay_s=30, jitter=lambda c: 0) == 30


async def test_with_retries_sleeps_between_attempts_only() -> None:
    """Three transient failures on three attempts: two sleeps (none after the last), the last
    error raised."""
    fake = FakeTime()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        raise TransientError(f"boom {calls}", status=500)

    with pytest.raises(TransientError, match="boom 3"):
        await with_retries(failing, attempts=3, base_s=1, jitter=lambda c: c, sleep=fake.sleep)
    assert calls == 3
    assert fake.slept == [1, 2]


async def test_permanent_error_is_not_retried() -> None:
    calls = 0

    async def refused() -> int:
        nonlocal calls
        calls += 1
        raise PermanentError("HTTP 401: bad key", status=401)

    with pytest.raises(PermanentError):
        await with_retries(refused, attempts=3, base_s=0)
    assert calls == 1
    with pytest.raises(ValueError, match="attempts"):
        await with_retries(refused, attempts=0)


# -- adaptive concurrency


async def test_limiter_bounds_calls_in_flight(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Never more calls at the provider than the limit."""
    fake_llm.latency_s = 0.02
    limiter = AdaptiveLimiter(3)
    client = OpenAIClient(session, fake_llm.url)

    async def call(i: int) -> ChatResult:
        return await limiter.run(lambda: client.chat(ask(f"p{i}")))

    await asyncio.gather(*(call(i) for i in range(12)))
    assert fake_llm.max_in_flight == 3
    assert limiter.in_flight == 0


async def test_burst_of_429_halves_once(fake_llm: FakeLLM, session: aiohttp.ClientSession) -> None:
    """8 calls in flight all answered 429 halve the limit once (8 → 4), not to 1; a 429 from a
    call started after that halves again; the lower limit holds at the provider."""
    fake_llm.latency_s = 0.05
    fake_llm.fail("status", status=429, first=1, message="rate limited")
    limiter = AdaptiveLimiter(8, recover_after=1000)
    client = OpenAIClient(session, fake_llm.url)

    async def attempt(prompt: str) -> ChatResult | TransientError:
        try:
            return await limiter.run(lambda: client.chat(ask(prompt)))
        except TransientError as error:
            return error

    first = await asyncio.gather(*(attempt(f"a{i}") for i in range(8)))
    assert all(isinstance(r, TransientError) and r.status == 429 for r in first)
    assert limiter.limit == 4

    await attempt("b0")  # started after the halving: a new overload
    assert limiter.limit == 2

    fake_llm.failures.clear()
    fake_llm.max_in_flight = 0
    await asyncio.gather(*(attempt(f"c{i}") for i in range(6)))
    assert fake_llm.max_in_flight == 2


async def test_limiter_recovers_slowly_within_bounds() -> None:
    """+1 after `recover_after` consecutive successes, never above the max; a 429 resets the
    streak; never below 1."""
    limiter = AdaptiveLimiter(4, recover_after=3)

    async def ok() -> str:
        return "ok"

    async def overloaded() -> str:
        raise TransientError("HTTP 503: busy", status=503)

    for _ in range(3):
        with pytest.raises(TransientError):
            await limiter.run(overloaded)
    assert limiter.limit == 1  # 4 → 2 → 1 → 1

    for _ in range(2):
        await limiter.run(ok)
    with pytest.raises(TransientError):
        await limiter.run(overloaded)  # resets the streak, stays at 1
    assert limiter.limit == 1
    for _ in range(3):
        await limiter.run(ok)
    assert limiter.limit == 2
    for _ in range(30):
        await limiter.run(ok)
    assert limiter.limit == 4


async def test_other_errors_do_not_halve() -> None:
    """A 500 or a timeout is not an overload signal."""
    limiter = AdaptiveLimiter(4)

    async def broken() -> str:
        raise TransientError("HTTP 500: oops", status=500)

    with pytest.raises(TransientError):
        await limiter.run(broken)
    assert limiter.limit == 4
    with pytest.raises(ValueError, match="max_concurrency"):
        AdaptiveLimiter(0)


async def test_raised_limit_wakes_waiters() -> None:
    """A caller waiting for a slot gets one as soon as recovery raises the limit."""
    limiter = AdaptiveLimiter(2, recover_after=1)
    held = await limiter.acquire()
    limiter.overloaded(held)
    assert limiter.limit == 1
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    limiter.succeeded(held)  # limit 2, the held slot is still taken
    await asyncio.wait_for(waiter, 1)
    assert limiter.in_flight == 2


# -- requests per minute


async def test_rate_limiter_paces_requests() -> None:
    """60 per minute: one per second after a burst of `burst`; waiters served in order."""
    fake = FakeTime()
    rate = RateLimiter(60, burst=2, clock=fake.clock, sleep=fake.sleep)
    times: list[tuple[int, float]] = []

    async def call(i: int) -> None:
        await rate.acquire()
        times.append((i, fake.now))

    await asyncio.gather(*(call(i) for i in range(5)))
    assert times == [(0, 0.0), (1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0)]
    fake.now += 10  # idle: the bucket refills up to its burst only
    await asyncio.gather(*(call(i) for i in range(5, 8)))
    assert [t for _, t in times[5:]] == [13.0, 13.0, 14.0]
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(0)


async def test_rpm_pacing_against_the_fake(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Real time, real HTTP: 600 per minute spaces 4 calls at least 0.1 s apart."""
    rate = RateLimiter(600)
    client = OpenAIClient(session, fake_llm.url)
    started = time.monotonic()

    async def call(i: int) -> ChatResult:
        return await paced(rate, lambda: client.chat(ask(f"r{i}")))

    await asyncio.gather(*(call(i) for i in range(4)))
    assert time.monotonic() - started >= 0.29
    assert fake_llm.total_calls == 4
    assert (await paced(None, lambda: client.chat(ask("free")))).content


async def test_waiters_are_served_in_order_and_cancelling_one_leaks_no_slot() -> None:
    """Freed slots go to waiters first come first served; a waiter cancelled while waiting
    takes no slot with it."""
    limiter = AdaptiveLimiter(1)
    held = await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    second.cancel()
    limiter.release()
    await asyncio.wait_for(first, 1)
    assert not third.done()
    limiter.release()
    await asyncio.wait_for(third, 1)
    assert second.cancelled()
    assert limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0
    assert held.epoch == 0
