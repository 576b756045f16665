"""The whole cache directory within its limits: a total size and an age.

Every project keeps its `keep` newest entries (`store.ProjectCache.prune`), but nothing there
bounds the download caches (npm's, yarn's, pnpm's and corepack's grow with every new version
installed) nor the caches of projects that are never built again (deleted ones). This does:
every entry and every download cache of every project and trust level is one unit, last used
when its directory's mtime (an entry: restored or saved; a download cache: its `.last-used`
file) says; units unused for longer than `max_age_s` go, then the least recently used go until
the total is under `max_bytes`. A unit used within `in_use_s` is never removed, whatever the
limits say: a build may be installing from it right now (the total may then stay over the limit
until the next run). What a former layout of the cache left (directories that are no trust
level) is removed.

Pure file-system logic, run in a thread by the worker's pruning loop (`main.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from launchdeck.build_worker.cache.store import (
    LAST_USED,
    MANIFEST,
    TRUST_LEVELS,
    ProjectCache,
    discard,
)


@dataclass(frozen=True)
class Unit:
    path: Path
    bytes: int
    used_at: float  # time.time() of its last use
    what: str  # for the log: `<project>/<trust> downloads` or `<project>/<trust> deps <key>`


@dataclass
class Pruned:
    removed: list[str] = field(default_factory=list)
    freed: int = 0  # bytes
    kept: int = 0  # bytes left in the cache


class _EntrySize(msgspec.Struct):
    bytes: int


def _tree_bytes(top: Path) -> int:
    total = 0
    pending = [top]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    pending.append(Path(entry.path))
                else:
                    total += st.st_size
    return total


def _entry_unit(entry: Path, what: str) -> Unit | None:
    """A complete entry, its size from its manifest (no walk of node_modules needed)."""
    manifest = entry / MANIFEST
    try:
        size = msgspec.json.decode(manifest.read_bytes(), type=_EntrySize).bytes
        size += manifest.stat().st_size
        return Unit(entry, size, entry.stat().st_mtime, what)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None  # incomplete or being removed: ProjectCache.prune deals with it


def _downloads_unit(downloads: Path, what: str) -> Unit | None:
    try:
        marker = downloads / LAST_USED
        used_at = marker.stat().st_mtime if marker.exists() else downloads.stat().st_mtime
        return Unit(downloads, _tree_bytes(downloads), used_at, what)
    except FileNotFoundError:
        return None


def _units(root: Path, keep: int, pruned: Pruned) -> list[Unit]:
    """Every unit under `root`; on the way, each project's own pruning and former layouts' and
    stray files' removal."""
    units: list[Unit] = []
    for project in sorted(root.iterdir()):
        if not project.is_dir() or project.is_symlink():
            continue
        for child in sorted(project.iterdir()):
            trust = next((t for t in TRUST_LEVELS if t == child.name), None)
            if trust is None:
                # A former layout (`<project>/deps`, `<project>/downloads`) or a stray file.
                if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                    size = _tree_bytes(child)
                    discard(child)
                    pruned.removed.append(f"{project.name}/{child.name} (former layout)")
                    pruned.freed += size
                continue
            name = f"{project.name}/{child.name}"
            for trash in child.glob(".trash-*"):  # a download cache whose removal was cut short
                shutil.rmtree(trash, ignore_errors=True)
            cache = ProjectCache(root, project.name, keep, trust)
            pruned.removed.extend(f"{name} deps {key[:12]}" for key in cache.prune())
            if cache.entries.is_dir():
                for entry in sorted(cache.entries.iterdir()):
                    if not entry.name.startswith("."):
                        unit = _entry_unit(entry, f"{name} deps {entry.name[:12]}")
                        if unit is not None:
                            units.append(unit)
            if cache.downloads.is_dir():
                unit = _downloads_unit(cache.downloads, f"{name} downloads")
                if unit is not None:
                    units.append(unit)
    return units


def _rmdir(path: Path) -> None:
    """Remove `path` if it is an empty directory."""
    with contextlib.suppress(OSError):
        path.rmdir()


def _tidy(root: Path) -> None:
    """Remove project and trust-level directories that pruning left empty."""
    for project in root.iterdir():
        if not project.is_dir() or project.is_symlink():
            continue
        for child in project.iterdir():
            _rmdir(child / "deps")
            _rmdir(child / "downloads")
            _rmdir(child)
        _rmdir(project)


def prune_cache(
    root: Path,
    *,
    max_bytes: int,
    max_age_s: float,
    in_use_s: float,
    keep: int,
    now: float | None = None,
) -> Pruned:
    """Bring the cache at `root` within `max_bytes` and `max_age_s` (module docstring)."""
    pruned = Pruned()
    if not root.is_dir():
        return pruned
    now = time.time() if now is None else now
    units = sorted(_units(root, keep, pruned), key=lambda u: (u.used_at, str(u.path)))
    total = sum(u.bytes for u in units)
    for unit in units:
        if now - unit.used_at < in_use_s:
            continue  # maybe in use by a build right now
        if now - unit.used_at <= max_age_s and total <= max_bytes:
            continue
        discard(unit.path)
        pruned.removed.append(unit.what)
        pruned.freed += unit.bytes
        total -= unit.bytes
    pruned.kept = total
    _tidy(root)
    return pruned
