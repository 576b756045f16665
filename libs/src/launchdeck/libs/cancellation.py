"""Sleeping in a loop without outliving a cancel.

nats-py may catch a cancel that lands inside one of its calls and carry on, so a retrying or
periodic loop can be told to stop and not notice; if it then went to sleep for an hour it would
hold its service's shutdown for that hour (seen: a pruner kept the control-api from stopping on
SIGTERM). `pause` is `asyncio.sleep` that first honours such a swallowed cancel: every loop that
sleeps between rounds sleeps through it.
"""

from __future__ import annotations

import asyncio


async def pause(seconds: float) -> None:
    """Sleep `seconds`, unless this task was asked to stop (even if the cancel was swallowed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)
