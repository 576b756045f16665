"""`process_alive`: running processes count, zombies and exited ones do not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from launchdeck.libs.processes import process_alive


def _wait_for_state(pid: int, state: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == state:
            return
        assert time.monotonic() < deadline, f"{pid} never reached state {state}"
        time.sleep(0.01)


def test_running_zombie_and_reaped() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert process_alive(child.pid)
        assert child.stdin is not None
        child.stdin.close()  # the child exits; unreaped, it stays a zombie
        _wait_for_state(child.pid, "Z")
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)


def test_own_process_is_alive() -> None:
    assert process_alive(os.getpid())
