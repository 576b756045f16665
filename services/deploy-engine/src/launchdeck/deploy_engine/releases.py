"""The release store on local disk.

    releases/<project>/<build_id>/     one immutable directory per release
    releases/<project>/current         symlink to the active production release (relative)
    releases/<project>/.project.json   what the edge needs to serve it again after a restart
                                       (custom domains, preview builds) and whose it is
    releases/.removed/<project_id>     deleted projects: deploy commands for them are refused

Entries whose name starts with a dot are bookkeeping (temporary extraction dirs, metadata) and
never releases. All functions are synchronous and cheap except `prune` (run it in a thread).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CURRENT = "current"
META_FILE = ".project.json"
REMOVED_DIR = ".removed"

PROJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
BUILD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class InvalidName(ValueError):
    """A project name or build id that cannot be a path component."""


def check_project_name(name: str) -> str:
    if not PROJECT_NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid project name {name!r} (expected a slug)")
    return name


def check_build_id(build_id: str) -> str:
    if build_id == CURRENT or not BUILD_ID_RE.fullmatch(build_id):
        raise InvalidName(f"invalid build id {build_id!r}")
    return build_id


@dataclass(frozen=True)
class Release:
    build_id: str
    path: Path
    mtime: float


@dataclass
class ProjectMeta:
    domains: list[str] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)  # build ids deployed as previews
    # The project these releases belong to (a deleted project's name can be taken again).
    project_id: str | None = None


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def project_dir(self, project: str) -> Path:
        return self.root / check_project_name(project)

    def release_dir(self, project: str, build_id: str) -> Path:
        return self.project_dir(project) / check_build_id(build_id)

    def current_link(self, project: str) -> Path:
        return self.project_dir(project) / CURRENT

    def has_release(self, project: str, build_id: str) -> bool:
        return self.release_dir(project, build_id).is_dir()

    def projects(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and PROJECT_NAME_RE.fullmatch(p.name)
        )

    def active_build(self, project: str) -> str | None:
        """The build `current` points at, if it points at an existing release."""
        link = self.current_link(project)
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        build_id = Path(target).name
        if not BUILD_ID_RE.fullmatch(build_id) or not self.has_release(project, build_id):
            return None
        return build_id

    def activate(self, project: str, build_id: str) -> str | None:
        """Point `current` at `build_id` atomically; return the build it pointed at before.

        A new symlink is made under a temporary name and renamed over `current` (rename is
        atomic), so a request at any moment sees either the old or the new release.
        """
        release = self.release_dir(project, build_id)
        if not release.is_dir():
            raise FileNotFoundError(f"release {release} does not exist")
        previous = self.active_build(project)
        link = self.current_link(project)
        tmp = link.with_name(f".{CURRENT}-{secrets.token_hex(4)}")
        os.symlink(build_id, tmp)  # relative: the releases dir can move
        try:
            os.replace(tmp, link)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        touch(release)
        return previous

    def list_releases(self, project: str) -> list[Release]:
        """Releases of a project, newest (by mtime) first."""
        directory = self.project_dir(project)
        if not directory.is_dir():
            return []
        found: list[Release] = []
        for entry in directory.iterdir():
            if entry.name == CURRENT or not BUILD_ID_RE.fullmatch(entry.name):
                continue
            if entry.is_symlink() or not entry.is_dir():
                continue
            found.append(Release(entry.name, entry, entry.stat().st_mtime))
        found.sort(key=lambda r: (r.mtime, r.build_id), reverse=True)
        return found

    def prune(self, project: str, keep: int, protect: tuple[str, ...] = ()) -> list[str]:
        """Remove all but the `keep` newest releases, never the active one or `protect`ed ones."""
        releases = self.list_releases(project)
        kept = {r.build_id for r in releases[:keep]}
        active = self.active_build(project)
        if active:
            kept.add(active)
        kept.update(protect)
        removed: list[str] = []
        for release in releases:
            if release.build_id in kept:
                continue
            # Rename first so a half-deleted tree is never visible under a release name.
            doomed = release.path.with_name(f".rm-{release.build_id}-{secrets.token_hex(4)}")
            os.rename(release.path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(release.build_id)
        return removed

    def clean_leftovers(self) -> int:
        """Remove what an interrupted extraction, download or prune left behind."""
        removed = 0
        if self.root.is_dir():
            for entry in self.root.glob(".rm-*"):  # a deleted project's directory
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        for project in self.projects():
            for entry in self.project_dir(project).iterdir():
                if entry.name.startswith((".tmp-", ".rm-", ".incoming-", f".{CURRENT}-")):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed += 1
        return removed

    def read_meta(self, project: str) -> ProjectMeta:
        path = self.project_dir(project) / META_FILE
        try:
            raw = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return ProjectMeta()
        project_id = raw.get("project_id")
        return ProjectMeta(
            domains=[str(d) for d in raw.get("domains", [])],
            previews=[str(b) for b in raw.get("previews", [])],
            project_id=str(project_id) if project_id else None,
        )

    def write_meta(self, project: str, meta: ProjectMeta) -> None:
        directory = self.project_dir(project)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{META_FILE}.{secrets.token_hex(4)}"
        raw = {"domains": meta.domains, "previews": meta.previews, "project_id": meta.project_id}
        tmp.write_text(json.dumps(raw))
        os.replace(tmp, directory / META_FILE)

    def _tombstone(self, project_id: str) -> Path:
        return self.root / REMOVED_DIR / check_build_id(project_id)

    def is_removed(self, project_id: str) -> bool:
        """Whether the project with this id was deleted (its deploy commands are refused)."""
        return self._tombstone(project_id).exists()

    def mark_removed(self, project_id: str) -> None:
        tombstone = self._tombstone(project_id)
        tombstone.parent.mkdir(parents=True, exist_ok=True)
        tombstone.touch()

    def remove_project(self, project: str) -> bool:
        """Delete the project's directory (releases, `current`, metadata); False if none."""
        directory = self.project_dir(project)
        if not directory.is_dir():
            return False
        # Renamed first, like a pruned release: never half-deleted under the project's name.
        doomed = self.root / f".rm-{project}-{secrets.token_hex(4)}"
        os.rename(directory, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True


def touch(path: Path) -> None:
    """Mark a release as recently used (pruning keeps the newest by mtime)."""
    os.utime(path)
