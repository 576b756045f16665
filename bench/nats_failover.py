"""NATS failover: a build that prints 100 lines over ~5 s on a 3-node cluster (3 replicas), with
the node leading the LOGS stream killed (kill -9) at line 30, against the same build without a
fault (the baseline), median of `--runs` runs each. Prints the time from the kill to the first
log line a WebSocket viewer receives after it, the build's time to its end in both cases, and the
lines lost (the goal: 0).

    uv run python bench/nats_failover.py [--runs 3]

The platform runs as `launchdeck dev --no-example` against a cluster this script starts (so it
can kill and restart its nodes); the killed node is started again between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats

if not __package__:
    # Run as a script (`python bench/<name>.py`): the repository root holds the `bench` package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import Dev, api, median, running_platform, scratch, script_repo
from launchdeck.devservers import NatsCluster, start_nats_cluster

LINES = 100
KILL_AT_LINE = 30
SCRIPT = f"""\
import os, time
for i in range(1, {LINES} + 1):
    print(f"line {{i}}", flush=True)
    time.sleep(0.05)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>failover bench</h1>")
"""


async def _quiet(_error: Exception) -> None:
    """The bench's own connection loses a node on purpose: no traceback for that."""


async def logs_leader(nc: Any) -> str:
    """The server name of the LOGS stream's leader, once it has one."""
    js = nc.jetstream()
    while True:
        try:
            info = await js.stream_info("LOGS")
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
        except (nats.errors.Error, TimeoutError):
            pass
        await asyncio.sleep(0.1)


async def one_build(
    session: aiohttp.ClientSession, dev: Dev, cluster: NatsCluster | None, nc: Any
) -> dict[str, float]:
    """One build, watched over the log WebSocket; with `cluster`, the LOGS leader is killed when
    line KILL_AT_LINE arrives. Returns the figures of the run (seconds, lines)."""
    started = time.monotonic()
    build = await api(session, dev, "POST", "/projects/failover/builds", {"deploy": False})
    url = f"{dev.api_url.replace('http', 'ws')}/api/v1/builds/{build['id']}/logs/ws"
    url += f"?token={dev.token}"
    printed: set[str] = set()
    killed_at: float | None = None
    status = "unknown"
    first_after_kill: float | None = None
    killed: str | None = None
    async with session.ws_connect(url, max_msg_size=0) as ws:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "end":
                status = frame["status"]
                break
            now = time.monotonic()
            if killed_at is not None and first_after_kill is None:
                first_after_kill = now
            printed.add(frame["line"])
            if (
                cluster is not None
                and killed_at is None
                and frame["line"] == f"line {KILL_AT_LINE}"
            ):
                killed = await logs_leader(nc)
                cluster.node(killed).kill()
                killed_at = time.monotonic()
    ended = time.monotonic()
    # When the build itself ended (not when the viewer heard of it), on the same clock.
    detail = await api(session, dev, "GET", f"/builds/{build['id']}")
    while detail["finished_at"] is None:  # the status event lands after the log's end
        await asyncio.sleep(0.05)
        detail = await api(session, dev, "GET", f"/builds/{build['id']}")
    finished_ago = time.time() - datetime.fromisoformat(detail["finished_at"]).timestamp()
    build_end = time.monotonic() - finished_ago
    if killed is not None:
        await asyncio.to_thread(cluster.node(killed).start)  # type: ignore[union-attr]
        await asyncio.to_thread(cluster.wait_ready)  # type: ignore[union-attr]
    lost = sum(f"line {i}" not in printed for i in range(1, LINES + 1))
    figures = {
        "build_s": build_end - started,
        "viewer_s": ended - started,
        "lost": float(lost),
        "ok": float(status == "succeeded"),
    }
    if killed_at is not None and first_after_kill is not None:
        figures["kill_to_next_line_s"] = first_after_kill - killed_at
        figures["kill_to_end_s"] = build_end - killed_at
    return figures


async def measure(runs: int) -> None:
    with scratch("launchdeck-bench-failover-") as tmp:
        repo = script_repo(tmp / "repo", "build.py", SCRIPT)
        cluster = await asyncio.to_thread(start_nats_cluster, tmp / "nats", 3, log_dir=tmp)
        try:
            env = {"NATS_URL": cluster.url, "LAUNCHDECK_NATS_REPLICAS": "3"}
            async with running_platform(env) as dev, aiohttp.ClientSession() as session:
                body = {
                    "name": "failover",
                    "repo_url": str(repo),
                    "build": {"build_command": "python3 build.py", "output_dir": "dist"},
                }
                await api(session, dev, "POST", "/projects", body)
                nc = await nats.connect(cluster.urls, error_cb=_quiet)
                try:
                    baseline = [await one_build(session, dev, None, nc) for _ in range(runs)]
                    faulty = [await one_build(session, dev, cluster, nc) for _ in range(runs)]
                finally:
                    await nc.close()
        finally:
            await asyncio.to_thread(cluster.stop)
    report(baseline, faulty)


def report(baseline: list[dict[str, float]], faulty: list[dict[str, float]]) -> None:
    def med(runs: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in runs if key in r])

    base_s, fault_s = med(baseline, "build_s"), med(faulty, "build_s")
    print(f"baseline (no fault): build of {LINES} lines, median {base_s:.2f} s")
    for i, run in enumerate(faulty, 1):
        print(
            f"  run {i}: LOGS leader killed at line {KILL_AT_LINE}; next line after "
            f"{run.get('kill_to_next_line_s', float('nan')):.2f} s, build ended "
            f"{run.get('kill_to_end_s', float('nan')):.2f} s after the kill, "
            f"{run['lost']:.0f} line(s) lost, {'succeeded' if run['ok'] else 'NOT succeeded'}"
        )
    print(
        f"with the LOGS leader killed: build median {fault_s:.2f} s (its viewer saw the end after "
        f"{med(faulty, 'viewer_s'):.2f} s); kill → next line median "
        f"{med(faulty, 'kill_to_next_line_s'):.2f} s; lines lost: "
        f"{sum(r['lost'] for r in faulty):.0f} in {len(faulty)} run(s)"
    )
    print(f"ratio build time with/without the fault: {fault_s / base_s:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.runs))


if __name__ == "__main__":
    main()
