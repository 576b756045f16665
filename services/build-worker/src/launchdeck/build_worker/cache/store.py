"""A project's entries on disk, per trust level: restore, atomic save, pruning, and its download
caches."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from launchdeck.build_worker.cache.key import FORMAT, CacheKey
from launchdeck.build_worker.cache.transfer import (
    REWRITTEN_IN_PLACE,
    CacheError,
    Copier,
    Item,
    Linker,
    unshare,
)
from launchdeck.contracts.statuses import Environment

MANIFEST = "manifest.json"
AREAS = ("root", "home")  # where an install writes: the build root and the build's HOME
# The trust levels, each with caches of its own: what a preview build (any ref, maybe an
# untrusted contributor's) installs or downloads never reaches a production build.
TRUST_LEVELS: tuple[Environment, ...] = ("production", "preview")
# Touched whenever a build uses a download cache: when it was last used (`cache/budget.py`).
LAST_USED = ".last-used"
# A save that crashed leaves its temporary directory; one this old is nobody's save in progress.
STALE_TEMP_S = 3600.0


@dataclass(frozen=True)
class Restored:
    files: int
    linked: bool  # hardlinked (False: copied, the cache is on another file system)


@dataclass(frozen=True)
class Saved:
    files: int
    bytes: int
    already: bool = False  # another build saved the same key first; its entry was kept


class Manifest(msgspec.Struct, kw_only=True, frozen=True):
    format: int
    key: str
    trust: str
    package_manager: str
    lock_file: str
    paths: list[tuple[str, str]]  # (area, path relative to the area), as the install left them
    items: list[Item]  # everything under `paths`, files with their size and sha256
    files: int
    bytes: int
    saved_at: float


def _safe_dir_name(project_id: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", project_id):
        return project_id
    return "p-" + hashlib.sha256(project_id.encode()).hexdigest()[:32]


def discard(path: Path) -> None:
    """Remove an entry or a download cache: renamed away first (to `.trash-…` beside it), so it
    is never seen half-deleted under its own name."""
    trash = path.with_name(f".trash-{uuid.uuid4().hex}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


class ProjectCache:
    """One project's entries (at most `keep`, least recently used dropped) and download caches,
    at one trust level: `<root>/<project>/<trust>/{deps,downloads}`."""

    def __init__(self, root: Path, project_id: str, keep: int, trust: Environment) -> None:
        if trust not in TRUST_LEVELS:
            raise ValueError(f"unknown trust level {trust!r}")
        self.trust = trust
        self.dir = root / _safe_dir_name(project_id) / trust
        self.entries = self.dir / "deps"
        self.downloads = self.dir / "downloads"
        self.keep = keep

    def download_env(self) -> dict[str, str]:
        """Build environment pointing the package managers' download caches here, so even an
        install that misses the cache fetches only what changed."""
        names = ("npm", "yarn", "pnpm", "corepack", "pip")
        dirs = {name: self.downloads / name for name in names}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        (self.downloads / LAST_USED).touch()  # in use: pruned last (`cache/budget.py`)
        return {
            "npm_config_cache": str(dirs["npm"]),
            "YARN_CACHE_FOLDER": str(dirs["yarn"]),
            "PNPM_STORE_DIR": str(dirs["pnpm"]),
            "npm_config_store_dir": str(dirs["pnpm"]),
            "COREPACK_HOME": str(dirs["corepack"]),  # yarn/pnpm releases fetched by corepack
            "PIP_CACHE_DIR": str(dirs["pip"]),  # a Python app's wheels
        }

    def restore(self, key: CacheKey, areas: Mapping[str, Path]) -> Restored | None:
        """Put the entry's paths into `areas`; None when there is no entry. A broken entry is
        removed and raises CacheError; whatever was already restored is removed again."""
        entry = self.entries / key.digest
        if not entry.is_dir():
            return None
        try:
            manifest = self._manifest(entry, key)
            os.utime(entry)  # most recently used: pruned last
            return self._restore(entry, manifest, areas)
        except CacheError:
            self.discard(entry)
            raise

    def _manifest(self, entry: Path, key: CacheKey) -> Manifest:
        try:
            data = (entry / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise CacheError("incomplete: no completion marker") from None
        try:
            manifest = msgspec.json.decode(data, type=Manifest)
        except msgspec.DecodeError as exc:
            raise CacheError(f"unreadable manifest: {exc}") from None
        if manifest.format != FORMAT or manifest.key != key.digest:
            raise CacheError("manifest of another format or key")
        if manifest.trust != self.trust:
            raise CacheError(f"saved by a {manifest.trust} build")
        if any(area not in AREAS for area, _ in manifest.paths):
            raise CacheError("manifest names an unknown area")
        return manifest

    def _restore(self, entry: Path, manifest: Manifest, areas: Mapping[str, Path]) -> Restored:
        """Put back exactly what the manifest lists, each file checked against its sha256."""
        linker = Linker(entry, {a: areas[a] for a in AREAS}, set(manifest.paths))
        try:
            for item in manifest.items:
                linker.place(item)
            if linker.files != manifest.files:
                raise CacheError(f"lists {linker.files} files where {manifest.files} were saved")
            if linker.linked:  # a prune rewrites these in place: not through the entry's files
                unshare(areas["root"], REWRITTEN_IN_PLACE)
        except BaseException:
            linker.undo()
            raise
        return Restored(files=linker.files, linked=linker.linked)

    def save(
        self, key: CacheKey, areas: Mapping[str, Path], paths: Sequence[tuple[str, str]]
    ) -> Saved:
        """Copy `paths` (area, relative path) into the entry of `key`, atomically."""
        self.entries.mkdir(parents=True, exist_ok=True)
        temp = self.entries / f".tmp-{key.short}-{uuid.uuid4().hex[:8]}"
        copier = Copier()
        try:
            temp.mkdir()
            for area, rel in paths:
                copier.copy(area, areas[area], temp / area, rel)
            manifest = Manifest(
                format=FORMAT,
                key=key.digest,
                trust=self.trust,
                package_manager=key.package_manager,
                lock_file=key.lock_file,
                paths=list(paths),
                items=copier.items,
                files=copier.files,
                bytes=copier.bytes,
                saved_at=time.time(),
            )
            (temp / MANIFEST).write_bytes(msgspec.json.encode(manifest))  # last: the marker
            try:
                os.rename(temp, self.entries / key.digest)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(temp)
                return Saved(files=copier.files, bytes=copier.bytes, already=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return Saved(files=copier.files, bytes=copier.bytes)

    def prune(self) -> list[str]:
        """Keep the `keep` most recently used complete entries; remove the others, incomplete
        ones and stale leftovers of crashed saves. Returns the keys removed."""
        if not self.entries.is_dir():
            return []
        complete: list[tuple[float, str]] = []
        removed: list[str] = []
        now = time.time()
        for child in self.entries.iterdir():
            try:
                if child.name.startswith(".trash-"):
                    shutil.rmtree(child, ignore_errors=True)
                elif child.name.startswith(".tmp-"):
                    if now - child.stat().st_mtime > STALE_TEMP_S:
                        self.discard(child)
                elif (child / MANIFEST).is_file():
                    complete.append((child.stat().st_mtime, child.name))
                else:
                    self.discard(child)
                    removed.append(child.name)
            except FileNotFoundError:
                continue  # removed meanwhile by another build's prune
        complete.sort(reverse=True)
        for _, name in complete[self.keep :]:
            self.discard(self.entries / name)
            removed.append(name)
        return removed

    def discard(self, entry: Path) -> None:
        """Remove an entry: renamed away first, so it is never seen half-deleted."""
        discard(entry)
