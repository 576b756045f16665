"""Shared plumbing of the app benchmarks: a small Node.js app in a git repository, deployed on the
platform `running_platform` started, redeployed, and a load generator run as a second process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench._platform import Dev, api, git

# The app: answers `GET /` with a short body naming its deployment, nothing else. No log line per
# request (what is measured is the platform, not the app's logging).
SERVER = r"""
const http = require("http");
const deployment = process.env.LAUNCHDECK_DEPLOYMENT_ID || "by-hand";
const server = http.createServer((req, res) => res.end(`ok ${deployment}`));
server.keepAliveTimeout = 60000;
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
"""
PACKAGE = {"name": "bench-app", "version": "1.0.0", "scripts": {"start": "node server.js"}}


def app_repo(repo: Path) -> Path:
    repo.mkdir(parents=True)
    (repo / "server.js").write_text(SERVER)
    (repo / "package.json").write_text(json.dumps(PACKAGE))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench app")
    return repo


async def wait_deployment(
    session: aiohttp.ClientSession, dev: Dev, deployment_id: str, timeout_s: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        deployment: dict[str, Any] = await api(session, dev, "GET", f"/deployments/{deployment_id}")
        if deployment["status"] in ("active", "failed"):
            if deployment["status"] == "failed":
                raise RuntimeError(f"deployment failed: {deployment['error']}")
            return deployment
        await asyncio.sleep(0.005)
    raise TimeoutError(f"deployment {deployment_id} not active")


async def deploy_app(session: aiohttp.ClientSession, dev: Dev, name: str, repo: Path) -> None:
    await api(session, dev, "POST", "/projects", {"name": name, "repo_url": str(repo)})
    build = await api(session, dev, "POST", f"/projects/{name}/builds", {})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        build = await api(session, dev, "GET", f"/builds/{build['id']}")
        if build["status"] in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(0.05)
    if build["status"] != "succeeded":
        raise RuntimeError(f"build {build['status']}: {build.get('error')}")
    while not build.get("deployment_id"):
        await asyncio.sleep(0.05)
        build = await api(session, dev, "GET", f"/builds/{build['id']}")
    await wait_deployment(session, dev, build["deployment_id"])


async def redeploy(session: aiohttp.ClientSession, dev: Dev, name: str) -> dict[str, Any]:
    """`POST /projects/{name}/redeploy` (the live build again, new process); the deployment,
    once active."""
    deployment = await api(session, dev, "POST", f"/projects/{name}/redeploy", {})
    return await wait_deployment(session, dev, deployment["id"])


def live_record(dev: Dev, project: str) -> dict[str, Any]:
    """The instance record of the project's live web process (the engine's `apps/`)."""
    for path in (dev.state_dir / "apps").glob("*/instance.json"):
        record: dict[str, Any] = json.loads(path.read_text())
        if record["project"] == project and record["status"] == "serving" and record["port"]:
            return record
    raise RuntimeError(f"no live web process of {project}")


def app_port(dev: Dev, project: str) -> int:
    """The port of the project's live web process."""
    return int(live_record(dev, project)["port"])


@dataclass
class LoadResult:
    latencies_ms: list[float]  # of answered requests, from their scheduled start
    failures: list[str]
    sent: int
    seconds: float  # how long requests were sent

    @classmethod
    def read(cls, path: Path) -> LoadResult:
        latencies, failures = [], []
        lines = path.read_text().splitlines()
        seconds = float(json.loads(lines[0])["elapsed_s"])
        for line in lines[1:]:
            entry = json.loads(line)
            if entry["ok"]:
                latencies.append(entry["ms"])
            else:
                failures.append(entry["error"])
        return cls(latencies, failures, len(latencies) + len(failures), seconds)


class LoadProcess:
    """`python -m bench._load` in a process of its own, until `stop()`."""

    def __init__(self, url: str, host: str, rate: float, out: Path) -> None:
        self.out = out
        root = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._load", url, host, str(rate), str(out)],
            stdin=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )

    def stop(self) -> LoadResult:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the load generator stops when its stdin closes
        self.proc.wait(60)
        return LoadResult.read(self.out)
