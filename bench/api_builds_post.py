"""Build requests: `POST /api/v1/projects/{id}/builds` (`{"deploy": false}`) accepted per second
through the transactional outbox, and the outbox lag at that rate: from the API's answer (the
build row and its command committed) to the command's publication on `ld.jobs.build`.

    uv run python -m bench.api_builds_post [--seconds 4] [--p99-bound-ms 250] [--rates 50,...]

Open loop (`bench/_http_load.py`, its own process), rising rates; a rate is sustained when
every request got 202 and the p99 latency is within the bound. A core NATS subscription on
`ld.jobs.build` (in this process) stamps each command's arrival: the lag is arrival - answer
(negative when the relay, woken by the commit's NOTIFY, published before the answer reached the
client), and arrival - `requested_at` (stamped inside the transaction, just before the commit:
an upper bound of commit → publish).

The build-worker runs (the platform's own), but is kept busy by one build of another project
that sleeps (concurrency 1): the requested builds stay queued in JetStream, so the figures are
the API's, the outbox relay's and Postgres's, not the builds'. All requests go to one project,
whose build counter row serialises them, as real pushes to one project would be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.msg import Msg

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._http_load import load
from bench._platform import Dev, api, median, percentile, running_platform, scratch, script_repo

SUBJECT = "ld.jobs.build"
RATES = [50, 100, 200, 300, 400, 600, 800, 1200]
LAG_WAIT_S = 10.0


@dataclass(frozen=True)
class Step:
    rate: float
    accepted_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    lag_answer_ms: list[float]
    lag_commit_ms: list[float]
    unpublished: int

    def sustained(self, bound_ms: float) -> bool:
        return self.errors == 0 and self.p99_ms <= bound_ms and self.unpublished == 0


async def block_the_worker(session: aiohttp.ClientSession, dev: Dev, repo: Path) -> None:
    """One build that sleeps holds the worker (concurrency 1): later builds stay queued."""
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


async def step(
    dev: Dev, url: str, rate: int, seconds: float, arrivals: dict[str, tuple[float, Any]], tmp: Path
) -> Step:
    spec = {
        "url": url,
        "method": "POST",
        "headers": dev.headers,
        "body": {"deploy": False},
        "rate": rate,
        "seconds": seconds,
        "connections": 128,
        "expect": 202,
        "keep_bodies": True,
    }
    result = await load(spec, tmp / f"{rate}.json")
    ok = [r for r in result["results"] if r[2] == 202]
    answered = {json.loads(r[3])["id"]: r[4] for r in ok}
    deadline = time.monotonic() + LAG_WAIT_S
    while any(b not in arrivals for b in answered) and time.monotonic() < deadline:  # noqa: ASYNC110 (a bench poll)
        await asyncio.sleep(0.05)
    lag_answer, lag_commit = [], []
    for build_id, answer_at in answered.items():
        if build_id in arrivals:
            arrived, requested_at = arrivals[build_id]
            lag_answer.append((arrived - answer_at) * 1000)
            if requested_at is not None:
                lag_commit.append((arrived - requested_at) * 1000)
    latencies = [r[1] for r in result["results"]]
    return Step(
        rate=rate,
        accepted_per_s=len(ok) / max(result["elapsed_s"], 1e-9),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=len(result["results"]) - len(ok),
        lag_answer_ms=lag_answer,
        lag_commit_ms=lag_commit,
        unpublished=sum(1 for b in answered if b not in arrivals),
    )


async def run(seconds: float, bound: float, rates: list[int]) -> None:
    with scratch("launchdeck-bench-post-") as tmp:
        repo = script_repo(tmp / "repo", "gen.py", "import os; os.makedirs('dist')\n")
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            await block_the_worker(session, dev, repo)
            project = await api(
                session,
                dev,
                "POST",
                "/projects",
                {
                    "name": "postbench",
                    "repo_url": str(repo),
                    "build": {"build_command": "python3 gen.py", "output_dir": "dist"},
                },
            )
            arrivals: dict[str, tuple[float, Any]] = {}

            async def on_command(msg: Msg) -> None:
                now = time.time()
                command = json.loads(msg.data)
                requested = command.get("requested_at")
                at = datetime.fromisoformat(requested).timestamp() if requested else None
                arrivals[command["build_id"]] = (now, at)

            nc = await nats.connect(dev.nats_url, **dev.nats_login)
            await nc.subscribe(SUBJECT, cb=on_command)
            await nc.flush()
            url = f"{dev.api_url}/api/v1/projects/{project['id']}/builds"
            steps: list[Step] = []
            with tempfile.TemporaryDirectory(prefix="launchdeck-bench-post-") as load_dir:
                for rate in rates:
                    done = await step(dev, url, rate, seconds, arrivals, Path(load_dir))
                    steps.append(done)
                    print(
                        f"  {rate:>5}/s: {done.accepted_per_s:7.1f} accepted/s  "
                        f"p50 {done.p50_ms:7.1f} ms  p99 {done.p99_ms:7.1f} ms  "
                        f"errors {done.errors:>4}  unpublished {done.unpublished:>4}  "
                        f"lag answer→publish p50 {median(done.lag_answer_ms):6.1f} ms "
                        f"p99 {percentile(done.lag_answer_ms, 99):6.1f} ms  "
                        f"requested_at→publish p50 {median(done.lag_commit_ms):6.1f} ms "
                        f"p99 {percentile(done.lag_commit_ms, 99):6.1f} ms"
                    )
                    if not done.sustained(bound):
                        break
            await nc.close()
    best = None
    for done in steps:
        if not done.sustained(bound):
            break
        best = done
    if best is None:
        print(f"no rate sustained (p99 ≤ {bound:.0f} ms, no errors, every command published)")
        return
    print(
        f"max sustained: {best.rate:.0f} POST/s ({best.accepted_per_s:.0f} accepted/s, p99 "
        f"{best.p99_ms:.0f} ms); outbox lag at that rate: answer→publish p50 "
        f"{median(best.lag_answer_ms):.1f} ms, p99 {percentile(best.lag_answer_ms, 99):.1f} ms; "
        f"requested_at→publish p50 {median(best.lag_commit_ms):.1f} ms, "
        f"p99 {percentile(best.lag_commit_ms, 99):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--p99-bound-ms", type=float, default=250.0)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.p99_bound_ms, [int(x) for x in args.rates.split(",")]))


if __name__ == "__main__":
    main()
