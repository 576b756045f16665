"""Checking on processes a test started indirectly."""

from __future__ import annotations

from launchdeck.libs.processes import process_alive as alive
from tests.polling import eventually


async def wait_gone(pid: int, within_s: float = 5.0) -> None:
    await eventually(f"process {pid} to exit", lambda: not alive(pid), within_s)
