"""The whole dependency cache within its limits (`cache.budget`): entries and download caches of
every project and trust level go when unused for too long, and least recently used first while
the total is over its size; what a build may be using stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from launchdeck.build_worker.cache.budget import prune_cache
from launchdeck.build_worker.cache.store import LAST_USED, ProjectCache
from launchdeck.contracts.statuses import Environment
from tests.build_worker.test_cache import installed, key_of

DAY = 24 * 3600.0
NOW = time.time()


def used(path: Path, days_ago: float) -> None:
    then = NOW - days_ago * DAY
    os.utime(path, (then, then))


def project_cache(
    tmp_path: Path, project: str, trust: Environment, *, download_bytes: int
) -> ProjectCache:
    """A project's cache at one trust level: one saved entry and a download cache holding
    `download_bytes`."""
    cache = ProjectCache(tmp_path / "cache", project, 2, trust)
    root, home, snapshot = installed(tmp_path, f"{project}-{trust}")
    cache.save(key_of(root), {"root": root, "home": home}, snapshot.changes())
    cache.download_env()
    (cache.downloads / "npm" / "_cacache.bin").write_bytes(b"x" * download_bytes)
    return cache


def entry_of(cache: ProjectCache) -> Path:
    [entry] = cache.entries.iterdir()
    return entry


def prune(tmp_path: Path, *, max_bytes: int = 10**12, max_age_days: float = 30) -> list[str]:
    pruned = prune_cache(
        tmp_path / "cache",
        max_bytes=max_bytes,
        max_age_s=max_age_days * DAY,
        in_use_s=3600,
        keep=2,
        now=NOW,
    )
    return sorted(pruned.removed)


def test_what_was_not_used_for_too_long_goes(tmp_path: Path) -> None:
    """A deleted project's cache (not used for 40 days) goes, entry and downloads; a project
    used yesterday keeps both; empty directories are tidied away."""
    gone = project_cache(tmp_path, "gone", "production", download_bytes=10)
    kept = project_cache(tmp_path, "kept", "preview", download_bytes=10)
    for path in (entry_of(gone), gone.downloads / LAST_USED):
        used(path, 40)
    for path in (entry_of(kept), kept.downloads / LAST_USED):
        used(path, 1)
    key = entry_of(gone).name[:12]

    assert prune(tmp_path) == [f"gone/production deps {key}", "gone/production downloads"]
    assert not (tmp_path / "cache" / "gone").exists()
    assert entry_of(kept).is_dir()
    assert (kept.downloads / "npm" / "_cacache.bin").is_file()


def test_the_total_stays_under_its_size_least_recently_used_first(tmp_path: Path) -> None:
    """Over the size limit, the least recently used units go until the rest fits: the oldest
    download cache (5 days) is enough for 250 kB; for 150 kB the next oldest, an entry (4 days)
    and a download cache (3 days), go too; the newest entry stays."""
    a = project_cache(tmp_path, "a", "production", download_bytes=200_000)
    b = project_cache(tmp_path, "b", "preview", download_bytes=200_000)
    used(a.downloads / LAST_USED, 5)
    used(entry_of(a), 4)
    used(b.downloads / LAST_USED, 3)
    used(entry_of(b), 2)
    key = entry_of(a).name[:12]

    assert prune(tmp_path, max_bytes=250_000) == ["a/production downloads"]
    assert prune(tmp_path, max_bytes=250_000) == []
    assert prune(tmp_path, max_bytes=150_000) == [
        f"a/production deps {key}",
        "b/preview downloads",
    ]
    assert entry_of(b).is_dir()
    assert not (tmp_path / "cache" / "a").exists()


def test_what_a_build_may_be_using_is_kept_whatever_the_limits(tmp_path: Path) -> None:
    """Units used within `in_use_s` (a build's longest time) stay, also over size and age."""
    busy = project_cache(tmp_path, "busy", "preview", download_bytes=100_000)
    assert prune(tmp_path, max_bytes=1, max_age_days=0) == []
    assert entry_of(busy).is_dir()
    assert busy.downloads.is_dir()


def test_a_former_layout_is_removed(tmp_path: Path) -> None:
    """`<project>/deps` and `<project>/downloads` (the layout before trust levels) go at once."""
    old = tmp_path / "cache" / "p1"
    (old / "deps" / ("a" * 64) / "root").mkdir(parents=True)
    (old / "downloads" / "npm").mkdir(parents=True)
    (old / "downloads" / "npm" / "blob").write_bytes(b"x" * 100)
    assert prune(tmp_path) == ["p1/deps (former layout)", "p1/downloads (former layout)"]
    assert not old.exists()
