"""Activation time of a process release: from `POST /projects/{id}/redeploy` to the new process
answering through the edge (its deployment id in the body), health check included; and the
deploy-engine's own part of it (`deployment_active`'s `took_ms`: the command taken → the event
stored).

Baseline: starting the same app by hand — the release's own start command (`npm start`, from its
manifest), in the release, with a PORT — and polling it every 5 ms until it answers; measured
while the platform runs, so both see the same machine.

    uv run python -m bench.app_activation [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from launchdeck.libs.launcher.release import process_env, read_manifest

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._apps import app_repo, deploy_app, live_record
from bench._platform import api, median, running_platform, scratch

TOOK = re.compile(r"\"took_ms\": (\d+), \"event\": \"deployment_active\"")


async def answers(session: aiohttp.ClientSession, url: str, host: str, body: str) -> bool:
    try:
        async with session.get(url, headers={"Host": host}) as resp:
            return resp.status == 200 and await resp.text() == body
    except (aiohttp.ClientError, OSError):
        return False


async def by_hand(release: Path, command: str, runs: int, tmp: Path) -> list[float]:
    manifest = read_manifest(release)
    assert manifest is not None
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(runs):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            base = {"PATH": os.environ["PATH"], "HOME": str(tmp), "PORT": str(port)}
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "sh",
                "-c",
                command,
                cwd=release,
                env=process_env(manifest, release, base),
                stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"http://127.0.0.1:{port}/"
            while not await answers(session, url, "localhost", "ok by-hand"):  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # polling is what is measured
            times.append(time.perf_counter() - start)
            os.killpg(proc.pid, signal.SIGTERM)
            await proc.wait()
    return times


async def measure(repo: Path, runs: int, tmp: Path) -> tuple[list[float], list[float], list[float]]:
    times: list[float] = []
    env = {"LAUNCHDECK_LOG_LEVEL": "info"}  # the engine's `deployment_active` lines
    async with running_platform(env) as dev, aiohttp.ClientSession() as session:
        await deploy_app(session, dev, "actapp", repo)
        record = live_record(dev, "actapp")
        base = await by_hand(Path(record["release"]), record["command"], runs, tmp)
        url = f"http://127.0.0.1:{dev.edge_port}/"
        for i in range(runs):
            start = time.perf_counter()
            deployment = await api(session, dev, "POST", "/projects/actapp/redeploy", {})
            while not await answers(session, url, "actapp.localhost", f"ok {deployment['id']}"):
                if time.perf_counter() - start > 60:
                    raise TimeoutError(f"run {i + 1}: the new process never answered")
                await asyncio.sleep(0.005)
            times.append(time.perf_counter() - start)
            print(f"  run {i + 1}: {times[-1] * 1000:.0f} ms", flush=True)
        log = (dev.state_dir / "dev.log").read_text(errors="replace")
    engine_s = [float(m) / 1000 for m in TOOK.findall(log)][-runs:]
    print(f"the app's start command: {record['command']}")
    return base, times, engine_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with scratch("launchdeck-bench-activation-") as tmp:
        repo = app_repo(tmp / "repo")
        base, ours, engine = asyncio.run(measure(repo, args.runs, tmp))
    print(
        "baseline (its start command by hand, polled until it answers): "
        f"median {median(base) * 1000:.0f} ms"
    )
    print(
        "launchdeck redeploy → new process answering at the edge: "
        f"median {median(ours) * 1000:.0f} ms "
        f"(min {min(ours) * 1000:.0f}, max {max(ours) * 1000:.0f})"
    )
    if engine:
        print(
            f"  of which the deploy-engine (command → active, health check included): "
            f"median {median(engine) * 1000:.0f} ms"
        )
        print(f"ratio engine activation/baseline: {median(engine) / median(base):.1f}x")
    print(f"ratio launchdeck/baseline: {median(ours) / median(base):.1f}x")


if __name__ == "__main__":
    main()
