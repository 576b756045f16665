"""Checking on processes a test started indirectly."""

from __future__ import annotations

import asyncio
import time

from launchdeck.libs.processes import process_alive as alive


async def wait_gone(pid: int, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.05)
