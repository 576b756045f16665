"""Shared bench plumbing: run `launchdeck dev --no-example` in a temporary state dir."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Dev:
    api_url: str
    edge_url: str
    token: str
    nats_url: str
    state_dir: Path
    # The operator's NATS login (dev.json's `nats_user`/`nats_password`) as nats-py's options;
    # empty with an external NATS_URL, whose own credentials are in the URL.
    nats_login: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def edge_port(self) -> int:
        return int(self.edge_url.rsplit(":", 1)[1].strip("/"))


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards: a benchmark leaves nothing behind."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def running_platform(env: dict[str, str] | None = None) -> AsyncIterator[Dev]:
    """The platform, on its own embedded servers unless `env` names some (`NATS_URL`, …)."""
    with scratch("launchdeck-bench-") as state_dir:
        async with _platform_in(state_dir, env or {}) as dev:
            yield dev


@asynccontextmanager
async def _platform_in(state_dir: Path, extra_env: dict[str, str]) -> AsyncIterator[Dev]:
    env = {
        **os.environ,
        "LAUNCHDECK_STATE_DIR": str(state_dir),
        "LAUNCHDECK_LOG_LEVEL": os.environ.get("LAUNCHDECK_LOG_LEVEL", "warning"),
        **extra_env,
    }
    log = open(state_dir / "dev.log", "wb")  # noqa: SIM115, ASYNC230 (start-up, once)
    proc = subprocess.Popen(  # noqa: ASYNC220 (start-up, once)
        [sys.executable, "-m", "launchdeck.cli.main", "dev", "--no-example"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        dev_json = state_dir / "dev.json"
        deadline = time.monotonic() + 120
        info: dict[str, Any] = {}
        while not info.get("ready"):  # dev.json says so once every service answers
            if proc.poll() is not None:
                raise RuntimeError((state_dir / "dev.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError("platform did not start")
            await asyncio.sleep(0.2)
            if dev_json.exists():
                try:
                    info = json.loads(dev_json.read_text())
                except ValueError:  # being written
                    info = {}
        yield Dev(
            api_url=info["api_url"],
            edge_url=info["edge_url"],
            token=info["admin_token"],
            nats_url=info["nats_url"],
            state_dir=state_dir,
            nats_login=(
                {"user": info["nats_user"], "password": info["nats_password"]}
                if info.get("nats_user")
                else {}
            ),
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def api(
    session: aiohttp.ClientSession, dev: Dev, method: str, path: str, body: Any = None
) -> Any:
    async with session.request(
        method, f"{dev.api_url}/api/v1{path}", json=body, headers=dev.headers
    ) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {data}")
        return data


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@launchdeck.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@launchdeck.invalid",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def script_repo(repo: Path, name: str, script: str) -> Path:
    """A git repository (branch main) holding one build script, committed once."""
    repo.mkdir()
    (repo / name).write_text(script)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"bench: {name}")
    return repo


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)
