"""The worker's use of the dependency cache (`cache/`): the install step — what it logs, and why
it never fails a build — and the loop that keeps the whole cache within its limits.

The cache is an optimisation: every operation on it runs in a thread (they walk and copy whole
node_modules trees) and any failure becomes one `⚠` system line, after which the build goes on
exactly as it would without a cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from launchdeck.build_worker.cache.budget import Pruned, prune_cache
from launchdeck.build_worker.cache.key import CacheKey, cache_key
from launchdeck.build_worker.cache.snapshot import Snapshot
from launchdeck.build_worker.cache.store import ProjectCache
from launchdeck.build_worker.cache.transfer import CacheError
from launchdeck.build_worker.detect import BuildPlan
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts.statuses import Environment
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

Say = Callable[[str], None]  # writes one system line to the build log
# How often the worker brings the whole cache within its size and age (`Settings.cache_max_*`).
CACHE_PRUNE_INTERVAL_S = 600.0

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
        trust: Environment,
        plan: BuildPlan,
        home: Path,
        path: str,
        say: Say,
    ) -> CachedInstall:
        """The cache of `project_id` at the build's trust level (production or preview: they
        never share an entry or a download cache)."""
        cache = ProjectCache(root, project_id, keep, trust)
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
        trust = self._cache.trust
        if restored is None:
            self._say(
                f"▶ No cached dependencies for this {key.lock_file} (key {key.short}, {trust} "
                "cache)"
            )
            return False
        how = "hardlinked" if restored.linked else "copied"
        self._say(
            f"✔ Dependencies restored from the {trust} cache ({key.lock_file} unchanged, key "
            f"{key.short}, {restored.files} files checked and {how}) in "
            f"{time.monotonic() - started:.1f}s"
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
            f"✔ Saved dependencies to the {self._cache.trust} cache (key {key.short}, "
            f"{saved.files} files, {_mib(saved.bytes)}) in {time.monotonic() - started:.1f}s"
        )


async def keep_cache_within_limits(
    settings: Settings, *, interval_s: float = CACHE_PRUNE_INTERVAL_S
) -> None:
    """At start and every `interval_s`: the whole cache within its size and age limits
    (`cache.budget`). Entries and download caches used within a build's longest possible time
    are left alone (a build may be using them). Errors are logged; the next run tries again."""
    root = settings.cache_dir
    assert root is not None, "no cache to prune"
    in_use_s = settings.max_timeout_s + settings.outage_grace_s

    def prune() -> Awaitable[Pruned]:
        return asyncio.to_thread(
            prune_cache,
            root,
            max_bytes=settings.cache_max_bytes,
            max_age_s=settings.cache_max_age_s,
            in_use_s=in_use_s,
            keep=settings.cache_keep,
        )

    def report(pruned: Pruned) -> None:
        if pruned.removed:
            log.info(
                "build_cache_pruned",
                removed=pruned.removed,
                freed_bytes=pruned.freed,
                kept_bytes=pruned.kept,
            )

    await run_periodically("build cache pruning", interval_s, prune, on_result=report)
