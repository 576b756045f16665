"""Shared test helpers: real git repositories, written and committed with fixed identities."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

GitRepoFactory = Callable[[dict[str, str | bytes]], Path]


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Launchdeck Tests",
        "GIT_AUTHOR_EMAIL": "tests@launchdeck.invalid",
        "GIT_COMMITTER_NAME": "Launchdeck Tests",
        "GIT_COMMITTER_EMAIL": "tests@launchdeck.invalid",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def write_files(repo: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def commit_files(repo: Path, files: dict[str, str | bytes], message: str) -> str:
    """Write `files` into `repo`, commit them, return the new commit sha."""
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()
