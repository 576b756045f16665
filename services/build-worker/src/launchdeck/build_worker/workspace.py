"""Each build attempt's work directory, held by its worker, and what a dead worker left behind.

Layout, under `LAUNCHDECK_BUILD_DIR`:

    <build id>-<attempt>-<8 hex>/        the attempt's work directory (src/, home/, tmp/, …)
    <build id>-<attempt>-<8 hex>.lock    flock'ed by the worker running the attempt

The lock is taken before the directory exists and given up after it is gone, and the kernel
releases it when the worker dies however it dies (SIGKILL, OOM). So a directory (or a process)
whose lock nobody holds belongs to a dead worker — even with several workers sharing the build
directory — and `reclaim`, run by every worker at start, removes it. Every build command carries
its work directory's path as `LAUNCHDECK_BUILD_MARKER` (`run.py`), which is how processes such a
worker left running (unsandboxed, they survive it) are found and killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.libs.launcher.reaper import kill_marked

LOCK_SUFFIX = ".lock"
# <build id>-<attempt>-<8 hex>: only what matches is ever removed from the build directory.
WORKDIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*-\d+-[0-9a-f]{8}$")


def lock_path(workdir: Path) -> Path:
    return workdir.with_name(workdir.name + LOCK_SUFFIX)


def claim(workdir: Path) -> int:
    """Take `workdir`'s lock, then create it; return the lock's descriptor (for `release`)."""
    workdir.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(workdir)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        workdir.mkdir()
    except BaseException:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
        raise
    return fd


def release(workdir: Path, fd: int | None) -> None:
    """Kill whatever still carries `workdir`'s marker, remove it, then give up its lock."""
    kill_marked(str(workdir).__eq__)
    shutil.rmtree(workdir, ignore_errors=True)
    if fd is not None:
        with contextlib.suppress(FileNotFoundError):
            lock_path(workdir).unlink()
        os.close(fd)


@dataclass
class Reclaimed:
    """What `reclaim` removed: work directories and processes of dead workers."""

    workdirs: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class _Locks:
    """Which attempts' locks are free (their worker is dead), taking each free one on the way so
    that no other worker's `reclaim` works on the same leftovers at the same time."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.taken: dict[str, int | None] = {}  # stale names → our descriptor of their lock
        self.live: set[str] = set()

    def stale(self, name: str) -> bool:
        if name in self.taken:
            return True
        if name in self.live or not WORKDIR_NAME.match(name):
            return False
        try:
            fd = os.open(self.build_dir / (name + LOCK_SUFFIX), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            self.taken[name] = None  # no lock at all: no worker can be running it
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.live.add(name)
            return False
        self.taken[name] = fd
        return True

    def marked_stale(self, marker: str) -> bool:
        """A marker naming a work directory of this build directory whose worker is dead."""
        path = Path(marker)
        return path.parent == self.build_dir and self.stale(path.name)


def reclaim(build_dir: Path) -> Reclaimed:
    """Remove what dead workers left in `build_dir`: kill the processes carrying the marker of
    one of their attempts, then remove those attempts' directories and lock files. Attempts of
    live workers (their lock is held) are left alone."""
    done = Reclaimed()
    if not build_dir.is_dir():
        return done
    locks = _Locks(build_dir)
    try:
        for entry in sorted(os.listdir(build_dir)):
            locks.stale(entry.removesuffix(LOCK_SUFFIX))
        # Also processes whose directory is already gone (killed between rmtree and unlock).
        done.pids = kill_marked(locks.marked_stale)
        for name in sorted(locks.taken):
            workdir = build_dir / name
            if workdir.is_dir():
                shutil.rmtree(workdir, ignore_errors=True)
                done.workdirs.append(name)
            if locks.taken[name] is not None:
                with contextlib.suppress(FileNotFoundError):
                    lock_path(workdir).unlink()
    finally:
        for fd in locks.taken.values():
            if fd is not None:
                os.close(fd)
    return done
