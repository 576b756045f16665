"""Moving files between a build and an entry: copied in (and listed) on save, checked and
hardlinked out on restore.

Kept apart from the store because the rules live here: what a save records of each file (its
size, sha256 and permission bits), what a restore refuses (a file whose content or mode is not
what was saved, a path leaving its area or passing through a link) and when it falls back from
linking to copying.

The manifest's list, not the entry directory, decides what is restored: directories and links are
made from the list, and each file is read and hashed before it is linked, so anything that changed
in the entry since the save — a build editing a restored file in place through its hardlink, a
file planted or swapped by whoever could write there — is detected and never reaches a build.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

# Hardlinks refused: another file system (EXDEV), not allowed here (EPERM, EACCES, ENOTSUP),
# too many links to one file (EMLINK). Restoring then copies.
LINK_REFUSED = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EMLINK})


class CacheError(Exception):
    """An entry that must not be used: incomplete, unreadable, or changed since it was saved."""


class Item(msgspec.Struct, array_like=True, frozen=True):
    """One thing an entry holds, as the save found it: a directory, a link (its target) or a
    file (its size, sha256 and permission bits). Listed parents first."""

    area: str
    path: str  # relative to the area, `/`-separated
    kind: Literal["dir", "link", "file"]
    size: int = 0
    sha256: str = ""
    mode: int = 0
    target: str = ""


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


# What package managers rewrite in place in an install they find — npm's hidden lock file when
# it prunes dev dependencies, Yarn's and pnpm's state files — relative to the build root: a
# restore gives these a copy of their own rather than a link, so the entry stays as it was saved.
REWRITTEN_IN_PLACE = (
    "node_modules/.package-lock.json",
    "node_modules/.yarn-integrity",
    "node_modules/.yarn-state.yml",
    "node_modules/.modules.yaml",
    "node_modules/.pnpm/lock.yaml",
    ".yarn/install-state.gz",
)


def unshare(top: Path, rels: Iterable[str]) -> int:
    """Give each regular file `top/<rel>` that is hardlinked elsewhere (to an entry) a copy of
    its own, renamed over it; a path through a link or to anything but a file is left alone.
    Returns how many were copied."""
    copied = 0
    for rel in rels:
        path = top
        try:
            for part in PurePosixPath(rel).parts[:-1]:
                path = path / part
                if not stat.S_ISDIR(path.lstat().st_mode):
                    raise FileNotFoundError(path)
            path = path / PurePosixPath(rel).name
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
            continue
        temp = path.with_name(f".{path.name}.unshared-{os.getpid()}")
        shutil.copy2(path, temp, follow_symlinks=False)
        os.replace(temp, path)
        copied += 1
    return copied


def _copy_hashing(src: Path, dst: Path) -> tuple[int, str]:
    """Copy a regular file (content, mode, times; the kernel's copy where it has one); its size
    and the sha256 of the copy (read back from the page cache: cheaper than copying through
    Python)."""
    shutil.copy2(src, dst, follow_symlinks=False)
    with dst.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return f.tell(), digest.hexdigest()


def _walk(top: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """`rel` and, when it is a directory, everything under it (parents first; links not
    followed)."""
    pending = [rel]
    while pending:
        path = pending.pop()
        st = os.lstat(top / path)
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(top / path) as entries:
                names = sorted((e.name for e in entries), reverse=True)
            pending.extend(f"{path}/{name}" for name in names)


class Copier:
    """Copies what a save keeps into an entry and lists it (`items`), with each file's size,
    sha256 and permission bits. Sockets, fifos and devices are left out."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.files = 0
        self.bytes = 0

    def copy(self, area: str, src_top: Path, dst_top: Path, rel: str) -> None:
        for path, st in _walk(src_top, rel):
            src, dst = src_top / path, dst_top / path
            if stat.S_ISDIR(st.st_mode):
                dst.mkdir(parents=True)
                self.items.append(Item(area, path, "dir"))
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(src)
                os.symlink(target, dst)
                self.items.append(Item(area, path, "link", target=target))
            elif stat.S_ISREG(st.st_mode):
                size, sha256 = _copy_hashing(src, dst)
                mode = stat.S_IMODE(st.st_mode)
                self.items.append(Item(area, path, "file", size=size, sha256=sha256, mode=mode))
                self.files += 1
                self.bytes += size


def _verify(src: str, item: Item) -> None:
    """The entry's copy of `item` is the very file that was saved, or CacheError. Opened without
    following a link, so what is checked is what `src` names."""
    where = f"{item.area}/{item.path}"
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CacheError(f"{where} is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheError(f"{where} is no longer a regular file") from None
        raise
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CacheError(f"{where} is no longer a regular file")
        if st.st_size != item.size or stat.S_IMODE(st.st_mode) != item.mode:
            raise CacheError(f"{where} was modified after it was saved (size or mode)")
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != item.sha256:
        raise CacheError(f"{where} was modified after it was saved (its sha256 differs)")


class Linker:
    """Restores an entry's items into the build: directories and links made from the manifest,
    files checked against it and hardlinked (copied for good after the first refusal)."""

    def __init__(self, entry: Path, areas: Mapping[str, Path], tops: set[tuple[str, str]]) -> None:
        self.entry = entry
        self.areas = areas
        self.tops = tops  # (area, path) the save was asked for: the only roots items may have
        self.made: set[tuple[str, str]] = set()  # directories this restore created
        self.placed: list[Path] = []  # top-level paths put in place, to undo on failure
        self.files = 0
        self.linked = True

    def _destination(self, item: Item) -> str:
        if item.area not in self.areas:
            raise CacheError("manifest names an unknown area")
        if (item.area, item.path) in self.tops:
            dst = inside(self.areas[item.area], item.path)
            remove(dst)  # what the checkout has there, the install would have replaced
            self.placed.append(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            return str(dst)
        parent, _, name = item.path.rpartition("/")
        # Only into a directory made just now: never through a link or a checkout's directory.
        if (item.area, parent) not in self.made or name in ("", ".", ".."):
            raise CacheError(f"bad path {item.path!r} in the entry")
        return f"{self.areas[item.area]}/{item.path}"

    def place(self, item: Item) -> None:
        dst = self._destination(item)
        if item.kind == "dir":
            os.mkdir(dst)
            self.made.add((item.area, item.path))
            return
        if item.kind == "link":
            os.symlink(item.target, dst)
            return
        src = f"{self.entry}/{item.area}/{item.path}"
        _verify(src, item)
        self.files += 1
        if self.linked:
            try:
                os.link(src, dst, follow_symlinks=False)
                return
            except OSError as exc:
                if exc.errno not in LINK_REFUSED:
                    raise
                self.linked = False
        shutil.copy2(src, dst, follow_symlinks=False)

    def undo(self) -> None:
        for path in reversed(self.placed):
            remove(path)
