"""Log latency: a build prints 20,000 timestamped lines; a WebSocket viewer records the delay from
each line's creation (in the build process) to its arrival, and the throughput in lines/s.

Baseline: a raw nats-py publish → subscribe of the same 20,000 lines on the same NATS server.

    uv run python -m bench.log_latency [--lines 20000] [--rate 0]

`--rate 0` (the default) prints the lines as fast as possible (a burst: latency is mostly
queueing); `--rate 5000` paces them, which shows the latency a live viewer sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import nats

if not __package__:
    # Run as a script (`python bench/<name>.py`): Python put bench/ on sys.path, not the
    # repository root, so the `bench` package (its _platform) needs the root added.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import api, median, percentile, running_platform, scratch, script_repo

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

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
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


async def run(lines: int, rate: float) -> None:
    with scratch("launchdeck-bench-logs-") as tmp:
        await measure(script_repo(tmp / "repo", "gen.py", SCRIPT), lines, rate)


async def measure(repo: Path, lines: int, rate: float) -> None:
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
        build = await api(session, dev, "POST", "/projects/logbench/builds", {"deploy": False})
        url = (
            dev.api_url.replace("http", "ws")
            + f"/api/v1/builds/{build['id']}/logs/ws?token={dev.token}"
        )
        delays: list[float] = []
        arrivals: list[float] = []
        async with session.ws_connect(url, max_msg_size=0) as ws:
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame["type"] == "end":
                    print(f"build ended: {frame['status']}")
                    break
                if frame["stream"] != "stdout":
                    continue
                now = time.time_ns()
                delays.append((now - int(frame["line"].split(" ", 1)[0])) / 1e6)
                arrivals.append(now / 1e9)
    ours = report("launchdeck build → WebSocket", delays, arrivals[-1] - arrivals[0])
    base = report("baseline nats-py publish → subscribe", base_delays, base_secs)
    print(
        f"ratio p50 latency launchdeck/baseline: {median(delays) / median(base_delays):.1f}x; "
        f"throughput launchdeck/baseline: {ours / base:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=0.0, help="lines/s; 0 = as fast as possible")
    args = parser.parse_args()
    asyncio.run(run(args.lines, args.rate))


if __name__ == "__main__":
    main()
