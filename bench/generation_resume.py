"""Resume cost: the time from a generator's restart to its first new model call, on a job of
50,000 items of which 49,000 are done, against a baseline measured in the same run: the same
restart on a fresh job of 1,000 items (none done).

    uv run python -m bench.generation_resume [--items 50000] [--done 49000]

How: the platform's generator is frozen (SIGSTOP) and left until its pending pull expired, so the
job's command waits in the stream; the job is created through the API and its first `--done`
items are marked done in Postgres (as a generator that died would have left them); the frozen
generator is then SIGKILLed and `launchdeck dev` starts it again. Measured: from the new
process's start (/proc) to the fake LLM's first call — interpreter start, NATS connect, the job
read, the first claim of pending items, the first call. The fake runs in its own process.

The bulk update leaves 49,000 dead row versions whose entries are still in the partial index of
pending items, which the first claim then walks; a job whose items were settled over minutes has
had autovacuum clean them. So the table is vacuumed first (as autovacuum would have), and the
same restart is measured again without it (`worst case`), as a third figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._generation import (
    bench_project,
    fake_llm_process,
    fake_stats,
    job_body,
    one_step_template,
    service_pid,
    started_at,
    wait_finished,
    wait_for_pid,
)
from bench._platform import Dev, api, running_platform

# nats-py's pull of the jobs runner asks for 5 s (libs.jobs.FETCH_TIMEOUT_S): after that, no
# request of the frozen generator is pending at the server.
PULL_EXPIRY_S = 6.0


async def restart_to_first_call(
    session: aiohttp.ClientSession,
    dev: Dev,
    fake_url: str,
    items: int,
    done: int,
    *,
    vacuum: bool = True,
) -> tuple[float, str]:
    old = service_pid(dev.state_dir)
    assert old is not None, "no generator process"
    os.kill(old, signal.SIGSTOP)
    await asyncio.sleep(PULL_EXPIRY_S)  # waiting out a server-side expiry: nothing to poll
    job = await api(
        session, dev, "POST", "/projects/bench-gen/generations", job_body("bench-line", items, 64)
    )
    if done:
        database_url = json.loads((dev.state_dir / "dev.json").read_text())["database_url"]
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE generation_items SET status = 'done', outputs = '{\"text\": \"x\"}',"
                    " finished_at = now() WHERE job_id = $1 AND idx < $2",
                    job["id"],
                    done,
                )
                await conn.execute(
                    "UPDATE generation_jobs SET done = $2 WHERE id = $1", job["id"], done
                )
            if vacuum:
                await conn.execute("VACUUM (ANALYZE) generation_items")
        finally:
            await conn.close()
    await fake_stats(session, fake_url, reset=True)
    os.kill(old, signal.SIGKILL)
    new = await wait_for_pid(dev.state_dir, old)
    born = started_at(new)
    deadline = time.monotonic() + 120
    while (stats := await fake_stats(session, fake_url))["first_call_at"] is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no call after the restart")
        await asyncio.sleep(0.01)
    return stats["first_call_at"] - born, job["id"]


async def main(items: int, done: int) -> None:
    async with fake_llm_process(0.01) as fake_url:
        env = {"OLLAMA_URL": fake_url, "LAUNCHDECK_LOG_LEVEL": "warning"}
        async with running_platform(env) as dev, aiohttp.ClientSession() as session:
            await bench_project(session, dev, "bench-gen")
            await one_step_template(session, dev, "bench-line")
            resume_s, job_id = await restart_to_first_call(session, dev, fake_url, items, done)
            resumed = await wait_finished(session, dev, job_id)
            calls = (await fake_stats(session, fake_url))["calls"]
            worst_s, worst_id = await restart_to_first_call(
                session, dev, fake_url, items, done, vacuum=False
            )
            await wait_finished(session, dev, worst_id)
            fresh_s, fresh_id = await restart_to_first_call(session, dev, fake_url, 1000, 0)
            await wait_finished(session, dev, fresh_id)
    print(f"restart → first call, {items} items of which {done} done: {resume_s * 1000:.0f} ms")
    print(f"baseline, restart → first call, fresh job of 1000 items: {fresh_s * 1000:.0f} ms")
    print(f"ratio (resume / baseline): {resume_s / fresh_s:.2f}")
    print(
        f"worst case, right after a bulk update (no vacuum): {worst_s * 1000:.0f} ms,"
        f" ratio {worst_s / fresh_s:.2f}"
    )
    print(
        f"resumed job: {resumed['status']}, done {resumed['done']} of {resumed['total']}"
        f" with {calls} calls after the restart (expected {items - done})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--done", type=int, default=49_000)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.done))
