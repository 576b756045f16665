"""Which lock file means which package manager: one table, read by detection and the cache.

Detection chooses the package manager (and so the install command) by the lock file; the cache
hashes every lock file into its key and names the deciding one in the build log. Both read this
table, so the manager a build installs with and the lock file its cache line names never disagree.
"""

from __future__ import annotations

from pathlib import Path

# In precedence order: the first one present decides. A pnpm or yarn project may carry a stray
# package-lock.json, and npm itself reads npm-shrinkwrap.json before package-lock.json.
LOCK_FILES: tuple[tuple[str, str], ...] = (
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("npm-shrinkwrap.json", "npm"),
    ("package-lock.json", "npm"),
)
MANAGER_OF: dict[str, str] = dict(LOCK_FILES)


def present_lock_files(root: Path) -> list[str]:
    """The lock files in `root`, in precedence order."""
    return [name for name, _ in LOCK_FILES if (root / name).is_file()]


def deciding_lock_file(root: Path) -> tuple[str, str] | None:
    """(lock file, package manager) of the lock file that decides in `root`; None without one."""
    for name, manager in LOCK_FILES:
        if (root / name).is_file():
            return name, manager
    return None
