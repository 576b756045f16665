"""WebSocket fan-out: 500 viewers of one build whose log grows by 2,000 lines/s. Every viewer
must receive every line once and in order (checked); the figure is the delay from a line's
creation to its arrival at each viewer (p50/p99/max over every line of every viewer).

    uv run python -m bench.ws_fanout [--viewers 500] [--rate 2000] [--seconds 10]
                                     [--processes 2] [--single]

The log is published like the build-worker does it (`LogBatch`es of the lines of the last 5 ms
on the build's subject of the LOGS stream; each line stamped with the time it was due, so the
batching wait counts), for a real build of a real project (queued behind a build that sleeps,
so no worker touches it). The viewers are `?batch=true` sockets on
`/api/v1/builds/{id}/logs/ws`, spread over `--processes` client processes (one asyncio loop
each: 500 sockets' frames in one Python process would make the client the bottleneck), which
connect first, then the log is published. `--single` adds a run with one-line frames.

Baseline, same run: the same fan-out straight from NATS — each client process holds one
nats-py connection with one core subscription per viewer on the build's subject (500
subscriptions: the server copies every batch 500 times, as the control-api's viewers would
need it without a shared reader), decoding each batch and checking the same order.

On a 2-core machine the NATS server, the control-api, the publisher and the client processes
share the cores: the delays are an upper bound of what the server side costs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import queue
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fanout_clients import BUCKET_MS, BUCKETS, Tally, client_process
from bench._platform import Dev, api, running_platform, scratch, script_repo
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import LogBatch, LogLine
from launchdeck.contracts.subjects import build_log_subject

BATCH_AGE_S = 0.005  # the build-worker's: a batch goes when its oldest line is this old


async def publish_log(dev: Dev, build_id: str, rate: float, seconds: float) -> tuple[int, float]:
    """Publish `rate` lines/s for `seconds` as a worker would, then the eof; (lines, seconds)."""
    nc = await nats.connect(dev.nats_url, **dev.nats_login)
    js = nc.jetstream()
    subject = build_log_subject(build_id)
    total = int(rate * seconds)
    start_ns = time.time_ns()
    start = time.monotonic()
    seq = 1
    while seq <= total:
        # Every line due by now goes in this batch, stamped with when it was due.
        due_now = min(total, int((time.monotonic() - start) * rate) + 1)
        if due_now < seq:
            await asyncio.sleep(BATCH_AGE_S)
            continue
        lines = [
            LogLine(
                seq=s,
                ts=datetime.now(UTC),
                stream="stdout",
                line=f"{start_ns + int((s - 1) / rate * 1e9)} line {s}",
            )
            for s in range(seq, due_now + 1)
        ]
        await js.publish(subject, encode(LogBatch(build_id=build_id, lines=lines)))
        seq = due_now + 1
        await asyncio.sleep(BATCH_AGE_S)
    elapsed = time.monotonic() - start
    eof = LogBatch(build_id=build_id, eof=True, status="succeeded")
    await js.publish(subject, encode(eof))
    await nc.close()
    return total, elapsed


def _percentile(histogram: list[int], q: float) -> float:
    total = sum(histogram)
    rank = q / 100 * (total - 1)
    seen = 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen > rank:
            return (bucket + 0.5) * BUCKET_MS
    return BUCKETS * BUCKET_MS


def _max(histogram: list[int]) -> float:
    return max((i for i, c in enumerate(histogram) if c), default=0) * BUCKET_MS


async def fan_out(
    dev: Dev,
    session: aiohttp.ClientSession,
    project_id: str,
    kind: str,
    batch: bool,
    viewers: int,
    processes: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    build = await api(session, dev, "POST", f"/projects/{project_id}/builds", {"deploy": False})
    total = int(rate * seconds)
    query = f"token={dev.token}" + ("&batch=true" if batch else "")
    url = dev.api_url.replace("http", "ws") + f"/api/v1/builds/{build['id']}/logs/ws?{query}"
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = []
    for i in range(processes):
        count = viewers // processes + (1 if i < viewers % processes else 0)
        period_ns = 1e9 / rate
        if kind == "ws":
            args: tuple[Any, ...] = (url, count, total, period_ns)
        else:
            subject = build_log_subject(build["id"])
            args = (dev.nats_url, dev.nats_login, subject, count, total, period_ns)
        proc = ctx.Process(target=client_process, args=(kind, args, ready, go, out))
        proc.start()
        procs.append(proc)
    loop = asyncio.get_running_loop()
    try:
        for _ in procs:  # every client connected and subscribed
            while not await loop.run_in_executor(None, ready.acquire, True, 1.0):
                _check_alive(procs)
        go.set()
        lines, elapsed = await publish_log(dev, build["id"], rate, seconds)
        tallies: list[Tally] = []
        deadline = time.monotonic() + seconds + 120
        while len(tallies) < len(procs):
            try:
                tallies.append(await loop.run_in_executor(None, out.get, True, 1.0))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("the viewers did not all finish") from None
                if len(tallies) + sum(p.is_alive() for p in procs) < len(procs):
                    _check_alive(procs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.join(5)
            if proc.is_alive():
                proc.kill()
    histogram = [sum(column) for column in zip(*(t.histogram for t in tallies), strict=True)]
    problems = [p for t in tallies for p in (t.problems or [])]
    return {
        "published": lines,
        "publish_rate": lines / elapsed,
        "complete": sum(t.complete for t in tallies),
        "viewers": viewers,
        "p50": _percentile(histogram, 50),
        "p99": _percentile(histogram, 99),
        "max": _max(histogram),
        "problems": problems,
    }


def _check_alive(procs: list[Any]) -> None:
    dead = [p.exitcode for p in procs if not p.is_alive() and p.exitcode]
    if dead:
        raise RuntimeError(f"a client process failed (exit codes {dead})")


async def block_the_worker(session: aiohttp.ClientSession, dev: Dev, repo: Path) -> None:
    """One build that sleeps holds the worker (concurrency 1): the measured builds stay queued
    (their logs are this benchmark's to write)."""
    await api(
        session,
        dev,
        "POST",
        "/projects",
        {
            "name": "blocker",
            "repo_url": str(repo),
            "build": {"build_command": "sleep 600", "output_dir": "dist"},
        },
    )
    build = await api(session, dev, "POST", "/projects/blocker/builds", {"deploy": False})
    deadline = time.monotonic() + 60
    while (await api(session, dev, "GET", f"/builds/{build['id']}"))["status"] == "queued":
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not take the blocking build")
        await asyncio.sleep(0.2)


def show(name: str, result: dict[str, Any]) -> None:
    print(
        f"{name}: {result['complete']}/{result['viewers']} viewers got all "
        f"{result['published']} lines in order (published at {result['publish_rate']:,.0f} "
        f"lines/s); delay p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
        f"max {result['max']:.1f} ms"
    )
    for problem in result["problems"]:
        print(f"  problem: {problem}")


async def run(viewers: int, rate: float, seconds: float, processes: int, single: bool) -> None:
    with scratch("launchdeck-bench-fanout-") as tmp:
        repo = script_repo(tmp / "repo", "gen.py", "import os; os.makedirs('dist')\n")
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            await block_the_worker(session, dev, repo)
            project = await api(
                session,
                dev,
                "POST",
                "/projects",
                {
                    "name": "fanout",
                    "repo_url": str(repo),
                    "build": {"build_command": "python3 gen.py", "output_dir": "dist"},
                },
            )
            common = (viewers, processes, rate, seconds)
            base = await fan_out(dev, session, project["id"], "nats", False, *common)
            show(f"baseline: {viewers} nats-py subscriptions", base)
            ours = await fan_out(dev, session, project["id"], "ws", True, *common)
            show(f"launchdeck: {viewers} WebSocket viewers, batch=true", ours)
            if single:
                one = await fan_out(dev, session, project["id"], "ws", False, *common)
                show(f"launchdeck: {viewers} WebSocket viewers, one line a frame", one)
    print(
        f"ratio p99 launchdeck/baseline: {ours['p99'] / base['p99']:.2f}x; "
        f"p50 {ours['p50'] / base['p50']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--single", action="store_true", help="also one-line frames")
    args = parser.parse_args()
    asyncio.run(run(args.viewers, args.rate, args.seconds, args.processes, args.single))


if __name__ == "__main__":
    main()
