"""Finding and killing what a build left running, by what it carries rather than by ancestry.

A build's command runs in its own process group, but any process can leave it: `setsid`, or a
double fork into a new session (how daemons, watchers and build servers start). Its ancestry is
gone too (an orphan is re-parented to init). Two things still tie it to its build, and both are
found by reading /proc:

- its environment: every build command gets `LAUNCHDECK_BUILD_MARKER=<its work directory>`,
  which children inherit (`marked_pids`);
- its file descriptors: a process still holding the build's stdout or stderr pipe is the build's,
  whatever it did to its environment (`pipe_holders`).

In the sandbox (bwrap, its own PID namespace) the kernel already kills every process of a build
when its command ends; these sweeps are what ends them without one, and what a worker uses at
start to clean up after a predecessor that was killed (`reclaim` in `workspace`).

Only processes of the worker's own user can be read (or signalled), which is every process a
build can start.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

MARKER_VAR = "LAUNCHDECK_BUILD_MARKER"
# The deploy-engine's apps carry their instance directory in this one (deploy_engine/apps).
APP_MARKER_VAR = "LAUNCHDECK_APP_MARKER"
# Killing a process while it forks can leave a new child behind: sweep until one pass finds none.
MAX_SWEEPS = 20
PROC = Path("/proc")


def _pids() -> Iterator[int]:
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    me = os.getpid()
    for name in names:
        if name.isdigit() and int(name) != me:
            yield int(name)


def _environ(pid: int) -> bytes | None:
    try:
        return (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, another user's, or a kernel thread
        return None


def marker_of(pid: int, var: str = MARKER_VAR) -> str | None:
    """The value of the marker variable `var` (`LAUNCHDECK_BUILD_MARKER`, or an app's
    `APP_MARKER_VAR`) `pid` was started with, if any."""
    data = _environ(pid)
    if not data:
        return None
    prefix = f"{var}=".encode()
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def marked_pids(wanted: Callable[[str], bool], var: str = MARKER_VAR) -> dict[int, str]:
    """Processes whose marker (variable `var`) `wanted` accepts, with their marker."""
    found: dict[int, str] = {}
    for pid in _pids():
        marker = marker_of(pid, var)
        if marker is not None and wanted(marker):
            found[pid] = marker
    return found


def _holds(pid: int, targets: Collection[str]) -> bool:
    fd_dir = PROC / str(pid) / "fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd_dir / fd) in targets:
                return True
    return False


def _pipe_names(inodes: Collection[int]) -> set[str]:
    return {f"pipe:[{inode}]" for inode in inodes}


def pipe_holders(inodes: Collection[int]) -> set[int]:
    """Processes (other than this one) holding an open descriptor of one of the pipes `inodes`."""
    if not inodes:
        return set()
    targets = _pipe_names(inodes)
    return {pid for pid in _pids() if _holds(pid, targets)}


def _alive(pid: int) -> bool:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _kill(pid: int, still: Callable[[int], bool]) -> bool:
    """SIGKILL `pid` if it runs and `still(pid)` holds, through a pidfd: the check and the
    signal then concern the same process even if `pid` was reused in between."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone (or no pidfd support: fall back to kill)
        if not _alive(pid) or not still(pid):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            return True
        return False
    try:
        if not _alive(pid) or not still(pid):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return True
        return False
    finally:
        os.close(pidfd)


def _sweep(find: Callable[[], Collection[int]], still: Callable[[int], bool]) -> list[int]:
    """Kill what `find` returns, and again what it returns next, until it finds nothing new (a
    process forking while it is killed can leave a child the previous pass did not see; one
    already killed may take a moment to die and is not signalled twice)."""
    killed: list[int] = []
    for _ in range(MAX_SWEEPS):
        new = [pid for pid in find() if pid not in killed and _alive(pid)]
        if not new:
            break
        killed += [pid for pid in new if _kill(pid, still)]
    return killed


def kill_marked(wanted: Callable[[str], bool], var: str = MARKER_VAR) -> list[int]:
    """Kill every process whose marker (variable `var`) `wanted` accepts."""

    def still(pid: int) -> bool:
        marker = marker_of(pid, var)
        return marker is not None and wanted(marker)

    return _sweep(lambda: marked_pids(wanted, var), still)


def kill_pipe_holders(inodes: Collection[int]) -> list[int]:
    """Kill every process holding one of the pipes `inodes`."""
    targets = _pipe_names(inodes)
    return _sweep(lambda: pipe_holders(inodes), lambda pid: _holds(pid, targets))
