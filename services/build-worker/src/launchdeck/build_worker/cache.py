"""Per-project dependency cache: what a package install wrote, put back when its inputs repeat.

Pure file-system logic (no NATS, no subprocesses); `dependencies.py` drives it during a build.

The key hashes everything that decides what the install writes: the package manager, the lock
file(s), package.json, the install command, the root_dir and the Node.js binary (native add-ons
are compiled for one). An entry holds what the install created or changed, found by comparing the
tree before and after it: `node_modules/` (nested workspace ones too) and whatever the root's
lifecycle scripts wrote (a `postinstall` copying assets into `public/`, yarn's `.pnp.cjs`), plus
what landed in the build's fresh HOME (e.g. a browser that puppeteer downloads). Replaying that is
what makes skipping the install safe. Files the install deleted are not replayed; installs add.

Layout, per project:
    <cache root>/<project>/deps/<key>/manifest.json   the completion marker, written last
    <cache root>/<project>/deps/<key>/{root,home}/…    the saved paths, per area
    <cache root>/<project>/downloads/{npm,yarn,pnpm,corepack}   download caches

An entry is written into a temporary directory beside the others and renamed into place, so a
`<key>` directory is complete or it is not there; two builds saving the same key both finish, one
rename wins and the other discards its copy. Removal renames first too (to `.trash-…`).

Saving copies (never links) the build's files: the build that follows the install still runs in
that tree and may change files in place. Restoring hardlinks (a copy when the file system refuses,
e.g. across devices): it is the fast path, and the price is that a later build editing a restored
file in place (rather than replacing it) edits the entry too. Such an edit moves the file's mtime
past the entry's marker, which every restore checks file by file (along with the file count), so a
touched entry is dropped and the next install starts clean instead of replaying the edit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import re
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgspec

from launchdeck.build_worker.detect import BuildPlan, package_manager

FORMAT = 1
MANIFEST = "manifest.json"
AREAS = ("root", "home")  # where an install writes: the build root and the build's HOME
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")
# The lock file each package manager reads, as `detect.package_manager` chose it (for the log).
LOCK_OF = {"pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock", "npm": "package-lock.json"}
# A save that crashed leaves its temporary directory; one this old is nobody's save in progress.
STALE_TEMP_S = 3600.0
# Hardlinks refused: another file system (EXDEV), not allowed here (EPERM, EACCES, ENOTSUP),
# too many links to one file (EMLINK). Restoring then copies.
LINK_REFUSED = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EMLINK})

# A file or link by (mtime_ns, size); a directory by None.
Stamp = tuple[int, int] | None


class CacheError(Exception):
    """An entry that must not be used: incomplete, unreadable, or changed since it was saved."""


@dataclass(frozen=True)
class CacheKey:
    digest: str  # sha256 hex: the entry's directory name
    package_manager: str
    lock_file: str

    @property
    def short(self) -> str:
        return self.digest[:12]


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
    package_manager: str
    lock_file: str
    paths: list[tuple[str, str]]  # (area, path relative to the area), as the install left them
    files: int
    bytes: int
    saved_at: float


# --- the key ---------------------------------------------------------------------------------


def lock_files(root: Path) -> list[str]:
    return [name for name in LOCK_FILES if (root / name).is_file()]


def _node_fingerprint(path: str) -> str:
    node = shutil.which("node", path=path)
    if node is None:
        return "no node"
    real = os.path.realpath(node)
    st = os.stat(real)
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def cache_key(plan: BuildPlan, path: str) -> CacheKey | None:
    """The key of `plan`'s install, or None when it is not cacheable (no install, no
    package.json, no lock file). `path` is the build's PATH, where its `node` is found."""
    root = plan.root
    locks = lock_files(root)
    package_json = root / "package.json"
    if not plan.install_command or not locks or not package_json.is_file():
        return None
    manager = package_manager(root).name
    digest = hashlib.sha256()

    def field(value: bytes) -> None:  # length-prefixed, so no two inputs hash alike
        digest.update(len(value).to_bytes(8, "big"))
        digest.update(value)

    for text in (
        f"launchdeck-deps/{FORMAT}",
        manager,
        plan.install_command,
        root.relative_to(plan.checkout).as_posix(),
        f"{sys.platform} {platform.machine()}",
        _node_fingerprint(path),
    ):
        field(text.encode())
    field(package_json.read_bytes())
    for name in locks:
        field(name.encode())
        field((root / name).read_bytes())
    lock = LOCK_OF[manager]
    if manager == "npm" and "npm-shrinkwrap.json" in locks:
        lock = "npm-shrinkwrap.json"
    return CacheKey(digest.hexdigest(), manager, lock)


# --- what the install wrote ------------------------------------------------------------------


def _walk(top: Path, descend: Mapping[str, Stamp] | None) -> dict[str, Stamp]:
    """Entries under `top` except `.git`. With `descend`, directories absent from it are
    reported but not entered (a new node_modules/ is one entry, not thousands)."""
    found: dict[str, Stamp] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(top / rel if rel else top) as entries:
            for entry in entries:
                if entry.name == ".git":
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    found[path] = None
                    if descend is None or (path in descend and descend[path] is None):
                        pending.append(path)
                else:
                    st = entry.stat(follow_symlinks=False)
                    found[path] = (st.st_mtime_ns, st.st_size)
    return found


@dataclass(frozen=True)
class Snapshot:
    """The areas as they were before the install, to tell afterwards what it wrote."""

    areas: Mapping[str, Path]
    before: Mapping[str, Mapping[str, Stamp]]

    @classmethod
    def take(cls, areas: Mapping[str, Path]) -> Snapshot:
        return cls(areas, {name: _walk(top, None) for name, top in areas.items()})

    def changes(self) -> list[tuple[str, str]]:
        """(area, path) of everything created or changed since: new directories as a whole."""
        out: list[tuple[str, str]] = []
        for name, top in self.areas.items():
            before = self.before[name]
            after = _walk(top, before)
            out.extend(
                (name, path)
                for path, stamp in sorted(after.items())
                if path not in before or (stamp is not None and before[path] != stamp)
            )
        return out


# --- entries ---------------------------------------------------------------------------------


def _safe_dir_name(project_id: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", project_id):
        return project_id
    return "p-" + hashlib.sha256(project_id.encode()).hexdigest()[:32]


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _inside(top: Path, rel: str) -> Path:
    """`top / rel`, refused when `rel` could leave `top` (the manifest or a checkout's links)."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise CacheError(f"bad path {rel!r} in the entry")
    target = top / rel
    if not target.parent.resolve().is_relative_to(top.resolve()):
        raise CacheError(f"{rel!r} would be restored outside the build")
    return target


class _Counter:
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


class _Linker:
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


def _place(src: Path, dst: Path, copy_file: _Counter | _Linker) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=copy_file)
    else:
        copy_file(str(src), str(dst))


class ProjectCache:
    """One project's entries (at most `keep`, least recently used dropped) and download caches."""

    def __init__(self, root: Path, project_id: str, keep: int) -> None:
        self.dir = root / _safe_dir_name(project_id)
        self.entries = self.dir / "deps"
        self.downloads = self.dir / "downloads"
        self.keep = keep

    def download_env(self) -> dict[str, str]:
        """Build environment pointing the package managers' download caches here, so even an
        install that misses the cache fetches only what changed."""
        dirs = {name: self.downloads / name for name in ("npm", "yarn", "pnpm", "corepack")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        return {
            "npm_config_cache": str(dirs["npm"]),
            "YARN_CACHE_FOLDER": str(dirs["yarn"]),
            "PNPM_STORE_DIR": str(dirs["pnpm"]),
            "npm_config_store_dir": str(dirs["pnpm"]),
            "COREPACK_HOME": str(dirs["corepack"]),  # yarn/pnpm releases fetched by corepack
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
        if any(area not in AREAS for area, _ in manifest.paths):
            raise CacheError("manifest names an unknown area")
        return manifest

    def _restore(self, entry: Path, manifest: Manifest, areas: Mapping[str, Path]) -> Restored:
        linker = _Linker(entry, (entry / MANIFEST).stat().st_mtime_ns)
        placed: list[Path] = []
        try:
            for area, rel in manifest.paths:
                src = entry / area / rel
                if not src.is_symlink() and not src.exists():
                    raise CacheError(f"{area}/{rel} is missing")
                dst = _inside(areas[area], rel)
                _remove(dst)  # what the checkout has there, the install would have replaced
                placed.append(dst)
                _place(src, dst, linker)
            if linker.files != manifest.files:
                raise CacheError(f"holds {linker.files} files where {manifest.files} were saved")
        except BaseException:
            for path in reversed(placed):
                _remove(path)
            raise
        return Restored(files=linker.files, linked=linker.linked)

    def save(
        self, key: CacheKey, areas: Mapping[str, Path], paths: Sequence[tuple[str, str]]
    ) -> Saved:
        """Copy `paths` (area, relative path) into the entry of `key`, atomically."""
        self.entries.mkdir(parents=True, exist_ok=True)
        temp = self.entries / f".tmp-{key.short}-{uuid.uuid4().hex[:8]}"
        counter = _Counter()
        try:
            temp.mkdir()
            for area, rel in paths:
                _place(areas[area] / rel, temp / area / rel, counter)
            manifest = Manifest(
                format=FORMAT,
                key=key.digest,
                package_manager=key.package_manager,
                lock_file=key.lock_file,
                paths=list(paths),
                files=counter.files,
                bytes=counter.bytes,
                saved_at=time.time(),
            )
            (temp / MANIFEST).write_bytes(msgspec.json.encode(manifest))  # last: the marker
            try:
                os.rename(temp, self.entries / key.digest)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(temp)
                return Saved(files=counter.files, bytes=counter.bytes, already=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return Saved(files=counter.files, bytes=counter.bytes)

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
        trash = entry.with_name(f".trash-{uuid.uuid4().hex}")
        try:
            os.rename(entry, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
