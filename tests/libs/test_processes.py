"""`process_alive`: running processes count, zombies and exited ones do not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from launchdeck.libs.processes import process_alive
from tests.polling import eventually_sync


def state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_running_zombie_and_reaped() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert process_alive(child.pid)
        assert child.stdin is not None
        child.stdin.close()  # the child exits; unreaped, it stays a zombie
        eventually_sync("the child to be a zombie", lambda: state(child.pid) == "Z")
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)


def test_own_process_is_alive() -> None:
    assert process_alive(os.getpid())
