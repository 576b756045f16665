"""What a killed `podman build` leaves running: its current `RUN` step.

The runner kills the engine's process group when a build is cancelled or times out, but the
`RUN` step's container (started by runc, in namespaces of its own) outlives it, reparented.
So a build as root gets a cgroup parent of its own (`podman build --cgroup-parent`): every
process of its `RUN` steps is in it, whatever it did to leave its process group, and
`end_cgroup` kills them by that name once the build command is over, then removes the cgroup
directories. Rootless podman cannot create cgroups here (cgroup v1): without root, nothing is
added and a killed build's step runs to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "/launchdeck-build-"
GONE_WAIT_S = 5.0
POLL_S = 0.05


def new_cgroup_parent() -> str | None:
    """A cgroup parent for one build's steps (None when this worker cannot make one)."""
    if os.geteuid() != 0:
        return None
    return f"{PREFIX}{uuid.uuid4().hex[:16]}"


def _in_cgroup(pid_dir: Path, name: str) -> bool:
    try:
        text = (pid_dir / "cgroup").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if path == name or path.startswith(f"{name}/"):
            return True
    return False


def cgroup_pids(name: str) -> list[int]:
    """The processes in cgroup `name` (or below it), in any hierarchy."""
    return [
        int(entry.name)
        for entry in PROC.iterdir()
        if entry.name.isdigit() and _in_cgroup(entry, name)
    ]


def end_cgroup(name: str) -> int:
    """Kill every process in `name` and remove its directories; returns how many were killed.
    Blocking (a thread's work): it waits up to `GONE_WAIT_S` for them to be gone."""
    if not name.startswith(PREFIX):
        raise ValueError(f"not a build's cgroup: {name!r}")  # never anyone else's
    killed = 0
    deadline = time.monotonic() + GONE_WAIT_S
    while pids := cgroup_pids(name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)  # the kernel reaps them within milliseconds
    _remove_dirs(name)
    return killed


def _remove_dirs(name: str) -> None:
    """Its directories in every hierarchy, the deepest first (an empty cgroup's only)."""
    rel = name.lstrip("/")
    for hierarchy in (CGROUP_ROOT, *_subdirs(CGROUP_ROOT)):
        top = hierarchy / rel
        if not top.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(PREFIX[1:])]
    except OSError:
        return []
