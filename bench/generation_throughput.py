"""Generation throughput: a job of 5,000 one-step items against the fake LLM at 100 ms per
answer with concurrency 64, through the whole platform (API → generator → fake LLM, every item
claimed and settled through the control-api), and the generator's CPU time per item.

    uv run python -m bench.generation_throughput [--items 5000] [--concurrency 64] [--latency 0.1]

Figures: items/s between the fake's first and last call (the generator's steady state) and over
the job's whole life (create → succeeded), as a ratio of the ideal (concurrency / latency), and
of a baseline measured in the same run: a bare aiohttp loop with the same concurrency calling the
same fake (what this machine can do with no platform at all). The fake runs in its own process.
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

from bench._generation import (
    bench_project,
    cpu_seconds,
    fake_llm_process,
    fake_stats,
    job_body,
    one_step_template,
    service_pid,
    wait_finished,
)
from bench._platform import api, running_platform


async def bare_loop(url: str, items: int, concurrency: int) -> float:
    """Items/s of `concurrency` plain clients calling the fake's /api/chat."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(items):
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                body = {
                    "model": "bench",
                    "messages": [{"role": "user", "content": f"Write a line about item {n}."}],
                    "stream": False,
                }
                async with session.post(f"{url}/api/chat", json=body) as resp:
                    await resp.read()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return items / (time.monotonic() - started)


async def main(items: int, concurrency: int, latency_s: float) -> None:
    ideal = concurrency / latency_s
    async with fake_llm_process(latency_s) as fake_url:
        bare = await bare_loop(fake_url, items, concurrency)
        env = {"OLLAMA_URL": fake_url, "LAUNCHDECK_LOG_LEVEL": "warning"}
        async with running_platform(env) as dev, aiohttp.ClientSession() as session:
            await bench_project(session, dev, "bench-gen")
            await one_step_template(session, dev, "bench-line")
            await fake_stats(session, fake_url, reset=True)
            pid = service_pid(dev.state_dir)
            assert pid is not None, "no generator process"
            cpu_before = cpu_seconds(pid)
            created = time.monotonic()
            job = await api(
                session,
                dev,
                "POST",
                "/projects/bench-gen/generations",
                job_body("bench-line", items, concurrency),
            )
            final = await wait_finished(session, dev, job["id"])
            whole = items / (time.monotonic() - created)
            cpu = cpu_seconds(pid) - cpu_before
            stats = await fake_stats(session, fake_url)
    calls_span = stats["last_call_at"] - stats["first_call_at"]
    steady = (stats["calls"] - 1) / calls_span if calls_span > 0 else float("nan")
    print(f"items {items}, concurrency {concurrency}, latency {latency_s * 1000:.0f} ms")
    print(f"job: {final['status']}, done {final['done']}, failed {final['failed']}")
    print(f"fake LLM calls: {stats['calls']}, max in flight {stats['max_in_flight']}")
    print(f"ideal (concurrency / latency): {ideal:.0f} items/s")
    print(f"baseline, bare aiohttp loop: {bare:.0f} items/s ({bare / ideal:.2f} of ideal)")
    print(f"generator, first to last call: {steady:.0f} items/s ({steady / ideal:.2f} of ideal)")
    print(f"generator, create to succeeded: {whole:.0f} items/s ({whole / ideal:.2f} of ideal)")
    print(f"ratio to baseline (first to last call): {steady / bare:.2f}")
    print(f"generator CPU: {cpu:.2f} s, {cpu / items * 1e6:.0f} µs per item")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.concurrency, args.latency))
