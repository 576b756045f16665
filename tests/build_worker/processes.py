"""Checking on processes a test started indirectly."""

from __future__ import annotations

import os
from pathlib import Path

from launchdeck.libs.processes import process_alive as alive
from tests.polling import eventually


async def wait_gone(pid: int, within_s: float = 5.0) -> None:
    await eventually(f"process {pid} to exit", lambda: not alive(pid), within_s)


def build_processes(build_id: str) -> list[int]:
    """Running processes of build `build_id`, seen from outside any sandbox (real pids): those
    whose LAUNCHDECK_BUILD_MARKER (the attempt's work directory) names the build."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(b"LAUNCHDECK_BUILD_MARKER=") and build_id.encode() in entry:
                if alive(int(name)):
                    found.append(int(name))
                break
    return found
