"""Moving files between a build and an entry: copied in on save, hardlinked out on restore.

Kept apart from the store because the rules live here: what a save clamps (future mtimes), what a
restore refuses (a file edited after the marker, a path leaving its area) and when it falls back
from linking to copying.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path, PurePosixPath

# Hardlinks refused: another file system (EXDEV), not allowed here (EPERM, EACCES, ENOTSUP),
# too many links to one file (EMLINK). Restoring then copies.
LINK_REFUSED = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EMLINK})


class CacheError(Exception):
    """An entry that must not be used: incomplete, unreadable, or changed since it was saved."""


def remove(path: Path) -> None:
    """Remove a file, link or directory tree at `path`, if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def inside(top: Path, rel: str) -> Path:
    """`top / rel`, refused when `rel` could leave `top` (the manifest or a checkout's links)."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise CacheError(f"bad path {rel!r} in the entry")
    target = top / rel
    if not target.parent.resolve().is_relative_to(top.resolve()):
        raise CacheError(f"{rel!r} would be restored outside the build")
    return target


class Copier:
    """copy_function that copies and counts; mtimes past the save's start are clamped to it,
    so the marker check on restore does not mistake a future-dated file for an edited one."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.started_ns = time.time_ns()

    def __call__(self, src: str, dst: str) -> str:
        shutil.copy2(src, dst, follow_symlinks=False)
        st = os.lstat(dst)
        self.files += 1
        self.bytes += st.st_size
        if st.st_mtime_ns > self.started_ns:
            os.utime(dst, ns=(st.st_atime_ns, self.started_ns), follow_symlinks=False)
        return dst


class Linker:
    """copy_function that hardlinks (copies for good after the first refusal), counts, and
    refuses a file modified after the entry's marker was written."""

    def __init__(self, entry: Path, marker_ns: int) -> None:
        self.entry = entry
        self.marker_ns = marker_ns
        self.files = 0
        self.linked = True

    def __call__(self, src: str, dst: str) -> str:
        if os.lstat(src).st_mtime_ns > self.marker_ns:
            rel = Path(src).relative_to(self.entry).as_posix()
            raise CacheError(f"{rel} was modified after it was saved")
        self.files += 1
        if self.linked:
            try:
                os.link(src, dst, follow_symlinks=False)
                return dst
            except OSError as exc:
                if exc.errno not in LINK_REFUSED:
                    raise
                self.linked = False
        shutil.copy2(src, dst, follow_symlinks=False)
        return dst


def place(src: Path, dst: Path, copy_file: Copier | Linker) -> None:
    """Put `src` (a file, a link or a whole tree) at `dst` through `copy_file`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=copy_file)
    else:
        copy_file(str(src), str(dst))
