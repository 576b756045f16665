"""The cache key: a digest of everything that decides what an install writes."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
from dataclasses import dataclass

from launchdeck.build_worker.detect import BuildPlan
from launchdeck.build_worker.lock_files import MANAGER_OF, present_lock_files

# Part of every key (and of every manifest): raising it retires all entries saved before.
# 2: entries list every file with its sha256 (checked on restore) and live per trust level.
FORMAT = 2


@dataclass(frozen=True)
class CacheKey:
    digest: str  # sha256 hex: the entry's directory name
    package_manager: str
    lock_file: str  # the lock file that decided the package manager (for the log)

    @property
    def short(self) -> str:
        return self.digest[:12]


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
    locks = present_lock_files(root)
    package_json = root / "package.json"
    if not plan.install_command or not locks or not package_json.is_file():
        return None
    lock = locks[0]  # the one that decides the package manager
    manager = MANAGER_OF[lock]
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
    # Lowest precedence first: the order keys have always been hashed in, so entries saved
    # before the lock-file table moved (lock_files.py) are still found.
    for name in reversed(locks):
        field(name.encode())
        field((root / name).read_bytes())
    return CacheKey(digest.hexdigest(), manager, lock)
