"""Periodic loops: a failing round is an outage retried at the next tick, and a cancel that a
library swallowed during a round still stops the loop (it must not go to sleep for an hour and
hold its service's shutdown)."""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from launchdeck.libs.periodic import run_periodically
from tests.polling import eventually


async def test_a_cancel_swallowed_during_a_round_still_stops_the_loop() -> None:
    started = asyncio.Event()

    async def round_that_swallows_a_cancel() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # as nats-py sometimes does
            await asyncio.sleep(10)

    loop = asyncio.create_task(run_periodically("test", 3600, round_that_swallows_a_cancel))
    await started.wait()
    loop.cancel()
    done, _ = await asyncio.wait({loop}, timeout=2)
    assert done, "the loop went to sleep instead of stopping"
    assert loop.cancelled()


async def test_failures_are_one_outage_and_results_reach_the_callback() -> None:
    rounds: list[int] = []
    results: list[int] = []

    async def flaky() -> int:
        rounds.append(len(rounds))
        if len(rounds) <= 3:
            raise ConnectionError("away")
        return len(rounds)

    with capture_logs() as logs:
        loop = asyncio.create_task(run_periodically("flaky", 0.01, flaky, on_result=results.append))
        await eventually("two good rounds", lambda: len(results) >= 2)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert results[:2] == [4, 5]
    events = [(e["event"], e.get("what")) for e in logs if e["event"].startswith("outage")]
    assert events == [("outage_began", "flaky"), ("outage_ended", "flaky")]
