"""Redeploys under load: failed requests during 20 redeploys of a Node.js app receiving a steady
200 req/s through the edge from a second process, and their p99 latency.

Baseline: the same load for as long, with no redeploy.

    uv run python -m bench.app_redeploys [--redeploys 20] [--rate 200]

Each redeploy (`POST /projects/{id}/redeploy`: the live build, a new deployment) starts a new
process, health-checks it, moves the route, and drains the old one. Every answer must be a 200
from the app; anything else (a 502, a reset connection, a timeout) is a failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._apps import LoadProcess, LoadResult, app_repo, deploy_app, redeploy
from bench._platform import median, percentile, running_platform, scratch


def report(name: str, result: LoadResult) -> None:
    lat, seconds = result.latencies_ms, result.seconds
    print(
        f"{name}: {result.sent} requests in {seconds:.1f}s ({result.sent / seconds:.0f}/s), "
        f"{len(result.failures)} failed; latency p50 {median(lat):.1f} ms, "
        f"p99 {percentile(lat, 99):.1f} ms, max {max(lat):.1f} ms"
    )
    for failure in sorted(set(result.failures))[:5]:
        print(f"  failure: {failure}")


async def run(redeploys: int, rate: float) -> None:
    with scratch("launchdeck-bench-redeploys-") as tmp:
        repo = app_repo(tmp / "repo")
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            await deploy_app(session, dev, "loadapp", repo)
            url = f"http://127.0.0.1:{dev.edge_port}/"
            # Warm up (connections, the app's JIT), then the baseline.
            warm = LoadProcess(url, "loadapp.localhost", rate, tmp / "warm.jsonl")
            await asyncio.sleep(3)
            warm.stop()

            load_started = time.monotonic()
            during = LoadProcess(url, "loadapp.localhost", rate, tmp / "during.jsonl")
            await asyncio.sleep(1)
            took: list[float] = []
            for _ in range(redeploys):
                one = time.monotonic()
                await redeploy(session, dev, "loadapp")
                took.append(time.monotonic() - one)
            await asyncio.sleep(1)  # the last old process drains
            during_result = during.stop()
            during_s = time.monotonic() - load_started

            baseline = LoadProcess(url, "loadapp.localhost", rate, tmp / "baseline.jsonl")
            await asyncio.sleep(during_s)
            baseline_result = baseline.stop()
    print(
        f"{redeploys} redeploys in {sum(took):.1f}s (each: median {median(took) * 1000:.0f} ms, "
        f"max {max(took) * 1000:.0f} ms, API call to active)"
    )
    report("during redeploys", during_result)
    report("baseline, no redeploy", baseline_result)
    p99, base_p99 = (percentile(r.latencies_ms, 99) for r in (during_result, baseline_result))
    print(
        f"failed requests during {redeploys} redeploys: {len(during_result.failures)} (goal 0); "
        f"p99 during/without: {p99 / base_p99:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redeploys", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    asyncio.run(run(args.redeploys, args.rate))


if __name__ == "__main__":
    main()
