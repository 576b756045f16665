"""Proxy overhead: requests per second and p99 latency of a small Node.js app through the edge
(Caddy's reverse proxy, as deployed) against the same process hit on its own port.

    uv run python -m bench.app_proxy [--seconds 10] [--connections 32]

Saturated: `wrk` (Debian: `apt-get install wrk`), 2 threads, keep-alive connections, as fast as
the app answers; each side twice, alternating, the better run of each kept. On a small machine
wrk, Caddy and the app share the cores, so the ratio is a bound on the overhead, not its value on
a dedicated edge. Paced: a steady `--rate` (500/s) from a second process (`bench/_load.py`, open
loop) for `--seconds` on each side: the latency a request pays for the proxy when nothing queues.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._apps import LoadProcess, LoadResult, app_port, app_repo, deploy_app
from bench._platform import median, percentile, running_platform, scratch

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Wrk:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, host: str, seconds: int, connections: int) -> Wrk:
    done = subprocess.run(
        [
            "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"Host: {host}", url,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    out = done.stdout
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or out}")

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Wrk(
        float(rps.group(1)),
        latency("50"),
        latency("99"),
        errors + (int(non2xx.group(1)) if non2xx else 0),
    )


def show(name: str, result: Wrk) -> None:
    print(
        f"{name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, {result.errors} errors"
    )


async def run(seconds: int, connections: int, rate: float) -> None:
    with scratch("launchdeck-bench-proxy-") as tmp:
        repo = app_repo(tmp / "repo")
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            await deploy_app(session, dev, "proxyapp", repo)
            edge = f"http://127.0.0.1:{dev.edge_port}/"
            direct = f"http://127.0.0.1:{app_port(dev, 'proxyapp')}/"
            runs: dict[str, list[Wrk]] = {"edge": [], "direct": []}
            if shutil.which("wrk") is not None:
                wrk(edge, "proxyapp.localhost", 2, connections)  # warm-up
                for _ in range(2):
                    runs["direct"].append(wrk(direct, "proxyapp.localhost", seconds, connections))
                    runs["edge"].append(wrk(edge, "proxyapp.localhost", seconds, connections))
            else:
                print("wrk is not installed (Debian: apt-get install wrk): no saturated figures")
            paced: dict[str, LoadResult] = {}
            for name, url in (("direct", direct), ("edge", edge)):
                load = LoadProcess(url, "proxyapp.localhost", rate, tmp / f"{name}.jsonl")
                await asyncio.sleep(seconds)
                paced[name] = load.stop()
    for name, result in paced.items():
        lat = result.latencies_ms
        print(
            f"paced {rate:.0f}/s, {name}: p50 {median(lat):.2f} ms, p99 {percentile(lat, 99):.2f} "
            f"ms, {len(result.failures)} failed of {result.sent}"
        )
    p99 = {name: percentile(r.latencies_ms, 99) for name, r in paced.items()}
    print(f"ratio edge/direct, paced: p99 {p99['edge'] / p99['direct']:.2f}x")
    if not runs["edge"]:
        return
    best = {name: max(results, key=lambda r: r.rps) for name, results in runs.items()}
    show("direct to the app's port", best["direct"])
    show("through the edge (Caddy)", best["edge"])
    print(
        f"ratio edge/direct, saturated: throughput {best['edge'].rps / best['direct'].rps:.2f}x, "
        f"p99 {best['edge'].p99_ms / best['direct'].p99_ms:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500.0, help="paced requests per second")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.connections, args.rate))


if __name__ == "__main__":
    main()
