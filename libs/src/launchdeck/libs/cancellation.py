"""Sleeping in a loop without outliving a cancel.

nats-py may catch a cancel that lands inside one of its calls and carry on, so a retrying or
periodic loop can be told to stop and not notice; if it then went to sleep for an hour it would
hold its service's shutdown for that hour (seen: a pruner kept the control-api from stopping on
SIGTERM). `pause` is `asyncio.sleep` that first honours such a swallowed cancel: every loop that
sleeps between rounds sleeps through it.
"""

from __future__ import annotations

import asyncio


def honour_swallowed_cancel() -> None:
    """Raise CancelledError if this task was asked to stop and a nats-py call swallowed it:
    call it after such calls in loops that would otherwise wait for more (a reader told to
    stop while subscribing went on reading a quiet log forever, and its `stop()` with it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def pause(seconds: float) -> None:
    """Sleep `seconds`, unless this task was asked to stop (even if the cancel was swallowed)."""
    honour_swallowed_cancel()
    await asyncio.sleep(seconds)
