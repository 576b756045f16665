"""Finding the binaries pip packages install, writing their private configuration, and stopping
servers a crashed run left behind."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from launchdeck.libs.processes import process_alive


def write_private_text(path: Path, text: str) -> None:
    """Write `path` readable by its owner only (0600) from its first byte: a server's
    configuration holding passwords is never, even briefly, readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def venv_binary(name: str) -> str:
    """A binary installed by a pip package into this environment's bin directory."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; install the project with `uv sync`")
    return found


def stop_leftover(pid: int, marker: str, timeout_s: float = 10.0) -> bool:
    """Stop process `pid` if it still runs and its command line contains `marker` (a server a
    crashed run left behind); return True when one was stopped. Linux only (reads /proc)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if marker not in cmdline:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
