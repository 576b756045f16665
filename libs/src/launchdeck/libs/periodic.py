"""Work repeated every few seconds or minutes (sweeps, pruning, watchers), written once.

`run_periodically(what, interval_s, once)` runs `once()` now and then every `interval_s` until
cancelled. A run that fails is an outage of `what` (logged once when it begins and once when it
ends, not at every tick) and is simply tried again at the next tick.

Between rounds it sleeps through `cancellation.pause`, so a cancel swallowed by a library during
a round still stops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from launchdeck.libs.cancellation import pause
from launchdeck.libs.outage import Outage

T = TypeVar("T")


async def run_periodically(
    what: str,
    interval_s: float,
    once: Callable[[], Awaitable[T]],
    *,
    on_result: Callable[[T], None] | None = None,
    first_delay_s: float = 0.0,
) -> NoReturn:
    """`once()` after `first_delay_s`, then every `interval_s`, until cancelled; each result goes
    to `on_result`; failures are an outage of `what`, retried at the next tick."""
    outage = Outage(what)
    await pause(first_delay_s)
    while True:
        try:
            result = await once()
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.over()
            if on_result is not None:
                on_result(result)
        await pause(interval_s)
