"""The install step's use of the dependency cache (`cache/`): what it logs, and why it never
fails a build.

The cache is an optimisation: every operation on it runs in a thread (they walk and copy whole
node_modules trees) and any failure becomes one `⚠` system line, after which the build goes on
exactly as it would without a cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from launchdeck.build_worker.cache.key import CacheKey, cache_key
from launchdeck.build_worker.cache.snapshot import Snapshot
from launchdeck.build_worker.cache.store import ProjectCache
from launchdeck.build_worker.cache.transfer import CacheError
from launchdeck.build_worker.detect import BuildPlan

Say = Callable[[str], None]  # writes one system line to the build log

NO_LOCK_HINT = (
    "▶ Dependency cache not used: no lock file (commit package-lock.json, yarn.lock or "
    "pnpm-lock.yaml to have the next build restore its dependencies)"
)


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"  # without the worker's own paths
    return f"{type(exc).__name__}: {exc}"


class CachedInstall:
    """One build's install step with the cache: `restore()` before it, or `watch()` before it
    and `save()` after it succeeded. `env` holds the download-cache variables for the build."""

    def __init__(
        self,
        cache: ProjectCache,
        key: CacheKey | None,
        areas: dict[str, Path],
        env: dict[str, str],
        say: Say,
    ) -> None:
        self._cache = cache
        self._key = key
        self._areas = areas
        self.env = env
        self._say = say
        self._snapshot: Snapshot | None = None

    @classmethod
    async def open(
        cls,
        root: Path,
        keep: int,
        project_id: str,
        plan: BuildPlan,
        home: Path,
        path: str,
        say: Say,
    ) -> CachedInstall:
        cache = ProjectCache(root, project_id, keep)
        key: CacheKey | None = None
        env: dict[str, str] = {}
        try:
            env = await asyncio.to_thread(cache.download_env)
            key = await asyncio.to_thread(cache_key, plan, path)
        except Exception as exc:
            say(f"⚠ Dependency cache unavailable ({_reason(exc)}); installing without it")
        else:
            if key is None and plan.install_command and (plan.root / "package.json").is_file():
                say(NO_LOCK_HINT)
        return cls(cache, key, {"root": plan.root, "home": home}, env, say)

    async def restore(self) -> bool:
        """True when the entry was restored and the install can be skipped."""
        key = self._key
        if key is None:
            return False
        started = time.monotonic()
        try:
            restored = await asyncio.to_thread(self._cache.restore, key, self._areas)
        except CacheError as exc:
            self._say(
                f"⚠ Ignored a damaged dependency cache entry (key {key.short}: {exc}); "
                "it was removed"
            )
            return False
        except Exception as exc:
            self._say(f"⚠ Dependency cache unavailable ({_reason(exc)}); installing without it")
            return False
        if restored is None:
            self._say(f"▶ No cached dependencies for this {key.lock_file} (key {key.short})")
            return False
        how = "hardlinked" if restored.linked else "copied"
        self._say(
            f"✔ Dependencies restored from cache ({key.lock_file} unchanged, key {key.short}, "
            f"{restored.files} files {how}) in {time.monotonic() - started:.1f}s"
        )
        return True

    async def watch(self) -> None:
        """Note the tree before the install, to save what it writes."""
        if self._key is None:
            return
        try:
            self._snapshot = await asyncio.to_thread(Snapshot.take, self._areas)
        except Exception as exc:
            self._say(f"⚠ Dependency cache unavailable ({_reason(exc)}); not saving this install")

    async def save(self) -> None:
        """After a successful install: save what it wrote under the key, prune old keys."""
        key, snapshot = self._key, self._snapshot
        if key is None or snapshot is None:
            return
        started = time.monotonic()
        try:
            paths = await asyncio.to_thread(snapshot.changes)
            if not paths:
                self._say("▶ The install wrote nothing to cache")
                return
            saved = await asyncio.to_thread(self._cache.save, key, self._areas, paths)
            await asyncio.to_thread(self._cache.prune)
        except Exception as exc:
            self._say(
                f"⚠ Could not save dependencies to the cache ({_reason(exc)}); the build goes on"
            )
            return
        if saved.already:
            self._say(f"▶ Dependencies for key {key.short} were already saved by another build")
            return
        self._say(
            f"✔ Saved dependencies to the cache (key {key.short}, {saved.files} files, "
            f"{_mib(saved.bytes)}) in {time.monotonic() - started:.1f}s"
        )
