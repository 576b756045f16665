"""Shared plumbing of the generation benchmarks: the fake LLM in its own process, the generator
process of a running platform (its pid and CPU time), a template and a job through the API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench._platform import Dev, api

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FINISHED = {"succeeded", "failed", "budget_exceeded", "cancelled"}


@asynccontextmanager
async def fake_llm_process(latency_s: float) -> AsyncIterator[str]:
    """`python -m tests.fake_llm` on a free port (its own process, so its CPU is not the
    generator's); yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_llm",
        "--latency",
        str(latency_s),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        await proc.wait()


async def fake_stats(session: aiohttp.ClientSession, url: str, reset: bool = False) -> Any:
    async with session.request("POST" if reset else "GET", f"{url}/_stats") as resp:
        return await resp.json()


def service_pid(state_dir: Path, module: str = "launchdeck.generator") -> int | None:
    """The pid of `python -m <module>` started by the platform in `state_dir`."""
    marker = f"LAUNCHDECK_STATE_DIR={state_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if module.encode() not in argv or marker not in (entry / "environ").read_bytes():
                continue
        except OSError:
            continue
        return int(entry.name)
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def started_at(pid: int) -> float:
    """When `pid` started, as a wall-clock time (time.time())."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + int(fields[19]) / CLOCK_TICKS


async def wait_for_pid(state_dir: Path, old: int | None, timeout_s: float = 60) -> int:
    """The generator's pid once it is a new one (after `old` was killed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid = service_pid(state_dir)
        if pid is not None and pid != old:
            return pid
        if time.monotonic() > deadline:
            raise TimeoutError("the generator did not start")
        await asyncio.sleep(0.05)


async def bench_project(session: aiohttp.ClientSession, dev: Dev, name: str) -> None:
    """A project to hold the jobs (it never builds: no repository is fetched)."""
    await api(session, dev, "POST", "/projects", {"name": name, "repo_url": "/nonexistent"})


async def one_step_template(session: aiohttp.ClientSession, dev: Dev, name: str) -> None:
    await api(
        session,
        dev,
        "POST",
        "/templates",
        {"name": name, "steps": [{"name": "text", "prompt": "Write a line about item {{ n }}."}]},
    )


def job_body(template: str, items: int, concurrency: int) -> dict[str, Any]:
    return {
        "template": template,
        "model": {"provider": "ollama", "name": "bench"},
        "variables": {"n": list(range(items))},
        "limits": {"concurrency": concurrency},
        "cache": False,
    }


async def wait_finished(
    session: aiohttp.ClientSession, dev: Dev, job_id: str, timeout_s: float = 600
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = await api(session, dev, "GET", f"/generations/{job_id}")
        if job["status"] in FINISHED:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']}: {job}")
        await asyncio.sleep(0.2)
