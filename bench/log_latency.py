"""Log latency: a build prints 20,000 timestamped lines; a WebSocket viewer records the delay from
each line's creation (in the build process) to its arrival, and the throughput in lines/s.

Baseline: a raw nats-py publish → subscribe of the same 20,000 lines on the same NATS server.

    uv run python -m bench.log_latency [--lines 20000] [--rate 0] [--batch both|off|on|N]

`--rate 0` (the default) prints the lines as fast as possible (a burst: latency is mostly
queueing); `--rate 5000` paces them, which shows the latency a live viewer sees. `--batch`: the
viewer's frames — one line each (`off`, the default of the API), batched (`on`: `?batch=true`;
N: at most N lines a frame), or `both` (the default here): one build viewed each way, in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.msg import Msg

if not __package__:
    # Run as a script (`python bench/<name>.py`): Python put bench/ on sys.path, not the
    # repository root, so the `bench` package (its _platform) needs the root added.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import (
    Dev,
    api,
    median,
    percentile,
    running_platform,
    scratch,
    script_repo,
)

SCRIPT = """\
import os, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
out = sys.stdout
start = time.monotonic()
for i in range(n):
    if rate and i % 10 == 0:  # paced: sleep until line i is due
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    out.write(f"{time.time_ns()} line {i}\\n")
    out.flush()
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>log bench</h1>")
"""


def report(name: str, delays_ms: list[float], seconds: float) -> float:
    rate = len(delays_ms) / seconds if seconds > 0 else float("inf")
    print(
        f"{name}: {len(delays_ms)} lines, p50 {median(delays_ms):.1f} ms, "
        f"p99 {percentile(delays_ms, 99):.1f} ms, max {max(delays_ms):.1f} ms, "
        f"{rate:,.0f} lines/s"
    )
    return rate


async def baseline(
    nats_url: str, login: dict[str, str], lines: int, rate: float
) -> tuple[list[float], float]:
    nc = await nats.connect(nats_url, **login)  # as the operator: the server requires a login
    delays: list[float] = []
    arrivals: list[float] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        now = time.time_ns()
        delays.append((now - int(msg.data.split(b" ", 1)[0])) / 1e6)
        arrivals.append(now / 1e9)
        if len(delays) == lines:
            done.set()

    await nc.subscribe("bench.baseline.lines", cb=on_msg)
    await nc.flush()
    start = time.monotonic()
    for i in range(lines):
        if rate and i % 10 == 0:  # paced like the build script
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await nc.publish("bench.baseline.lines", f"{time.time_ns()} line {i}".encode())
    await nc.flush()
    await asyncio.wait_for(done.wait(), 60)
    await nc.close()
    return delays, arrivals[-1] - arrivals[0]


async def run(lines: int, rate: float, batches: list[str]) -> None:
    with scratch("launchdeck-bench-logs-") as tmp:
        await measure(script_repo(tmp / "repo", "gen.py", SCRIPT), lines, rate, batches)


async def measure(repo: Path, lines: int, rate: float, batches: list[str]) -> None:
    async with running_platform() as dev, aiohttp.ClientSession() as session:
        base_delays, base_secs = await baseline(dev.nats_url, dev.nats_login, lines, rate)
        await api(
            session,
            dev,
            "POST",
            "/projects",
            {
                "name": "logbench",
                "repo_url": str(repo),
                "build": {"build_command": f"python3 gen.py {lines} {rate}", "output_dir": "dist"},
            },
        )
        results = [(batch, *await view_build(session, dev, batch)) for batch in batches]
    base = report("baseline nats-py publish → subscribe", base_delays, base_secs)
    for batch, delays, seconds, frames in results:
        ours = report(f"launchdeck build → WebSocket, batch={batch}", delays, seconds)
        print(
            f"  batch={batch}: {frames} frames ({len(delays) / frames:.1f} lines a frame); "
            f"p50 launchdeck/baseline {median(delays) / median(base_delays):.2f}x, "
            f"p99 {percentile(delays, 99) / percentile(base_delays, 99):.2f}x, "
            f"throughput {ours / base:.2f}x"
        )


async def view_build(
    session: aiohttp.ClientSession, dev: Dev, batch: str
) -> tuple[list[float], float, int]:
    """Start a build and view its log live: (delays in ms, seconds first → last line, frames)."""
    build = await api(session, dev, "POST", "/projects/logbench/builds", {"deploy": False})
    query = f"token={dev.token}" + ("" if batch == "off" else f"&batch={batch}")
    url = dev.api_url.replace("http", "ws") + f"/api/v1/builds/{build['id']}/logs/ws?{query}"
    delays: list[float] = []
    arrivals: list[float] = []
    frames = 0

    def seen(line: dict[str, Any], now: int) -> None:
        if line["stream"] == "stdout":
            delays.append((now - int(line["line"].split(" ", 1)[0])) / 1e6)
            arrivals.append(now / 1e9)

    async with session.ws_connect(url, max_msg_size=0) as ws:
        async for msg in ws:
            frame = json.loads(msg.data)
            now = time.time_ns()
            frames += 1
            if frame["type"] == "end":
                print(f"build ended ({batch=}): {frame['status']}")
                break
            if frame["type"] == "logs":
                for line in frame["lines"]:
                    seen(line, now)
            else:
                seen(frame, now)
    return delays, arrivals[-1] - arrivals[0], frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=0.0, help="lines/s; 0 = as fast as possible")
    parser.add_argument("--batch", default="both", help="off, on, N (lines a frame) or both")
    args = parser.parse_args()
    batches = ["off", "true"] if args.batch == "both" else [args.batch.replace("on", "true")]
    asyncio.run(run(args.lines, args.rate, batches))


if __name__ == "__main__":
    main()
