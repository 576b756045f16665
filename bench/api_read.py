"""API reads: `GET /api/v1/projects/{id}/builds?limit=50` (a project with 50 builds) at rising
request rates, against a bare aiohttp handler answering the same JSON bytes from memory.

    uv run python -m bench.api_read [--seconds 4] [--p99-bound-ms 100] [--rates 250,500,...]

Open loop (`bench/_http_load.py`, its own process): each rate for `--seconds`; a rate is
sustained when every request got 200 and the p99 (counted from each request's scheduled start)
is within `--p99-bound-ms`. The climb stops at the first rate that is not, or that the load
process itself could not keep to (more than 50 ms behind schedule: then the figure is the load
generator's limit, not the server's, and is marked so). With `wrk` installed, a saturated
closed-loop run of each side (1 thread, 16 connections) adds the plain max throughput.

The platform's build-worker and the rest run alongside (idle once the 50 builds are done); on a
2-core machine the load process, the API and Postgres share the cores, as the bare server and
the load process do: the ratio is what the API's own work costs, not a dedicated server's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._http_load import ROOT, load
from bench._platform import Dev, api, percentile, running_platform, scratch, script_repo

BUILDS = 50
RATES = [250, 500, 750, 1000, 1250, 1500, 2000, 3000, 4000, 6000, 8000]
LATE_MS = 50.0
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Step:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    late_ms: float

    def sustained(self, bound_ms: float) -> bool:
        return self.errors == 0 and self.p99_ms <= bound_ms and self.late_ms <= LATE_MS


async def climb(
    name: str, url: str, headers: dict[str, str], rates: list[int], seconds: float, bound: float
) -> list[Step]:
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="launchdeck-bench-read-") as tmp:
        for rate in rates:
            spec = {"url": url, "headers": headers, "rate": rate, "seconds": seconds}
            result = await load({**spec, "connections": 128}, Path(tmp) / f"{rate}.json")
            latencies = [r[1] for r in result["results"]]
            errors = [r for r in result["results"] if r[2] != 200]
            step = Step(
                rate=rate,
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                errors=len(errors),
                late_ms=result["late_ms"],
            )
            steps.append(step)
            note = "" if not errors else f"  first error: {errors[0][2]} {errors[0][3]!r:.120}"
            print(
                f"  {name:>9} {rate:>6}/s: p50 {step.p50_ms:7.1f} ms  p99 {step.p99_ms:7.1f} ms"
                f"  errors {step.errors:>5}  load behind by {step.late_ms:6.1f} ms{note}"
            )
            if not step.sustained(bound):
                break
    return steps


def max_sustained(steps: list[Step], bound: float) -> tuple[float, str]:
    """The highest rate sustained, and why the climb stopped."""
    best = 0.0
    for step in steps:
        if not step.sustained(bound):
            why = (
                "load generator behind schedule"
                if step.late_ms > LATE_MS and step.errors == 0 and step.p99_ms <= bound
                else f"p99 {step.p99_ms:.0f} ms / {step.errors} errors at {step.rate:.0f}/s"
            )
            return best, why
        best = step.rate
    return best, "top of the rate list"


def wrk_rps(url: str, headers: dict[str, str], seconds: int) -> tuple[float, float] | None:
    """(requests/s, p99 ms) of a saturated closed-loop wrk run; None without wrk."""
    if shutil.which("wrk") is None:
        return None
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency"]
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rps is None or p99 is None:
        raise RuntimeError(out)
    if non2xx is not None:
        raise RuntimeError(f"wrk got {non2xx.group(1)} errors from {url}")
    return float(rps.group(1)), float(p99.group(1)) * UNITS[p99.group(2)]


async def seed(session: aiohttp.ClientSession, dev: Dev, repo: Path) -> str:
    """A project with BUILDS finished builds; its id."""
    project = await api(
        session,
        dev,
        "POST",
        "/projects",
        {
            "name": "readbench",
            "repo_url": str(repo),
            "build": {"build_command": "python3 gen.py", "output_dir": "dist"},
        },
    )
    for _ in range(BUILDS):
        build = await api(session, dev, "POST", f"/projects/{project['id']}/builds", {})
        # Cancelled while queued (or soon after starting): 50 rows without 50 builds' CPU.
        await api(session, dev, "POST", f"/builds/{build['id']}/cancel")
    while True:
        page = await api(session, dev, "GET", f"/projects/{project['id']}/builds?limit={BUILDS}")
        if all(b["status"] in {"cancelled", "failed", "succeeded"} for b in page["items"]):
            return str(project["id"])
        await asyncio.sleep(0.5)


async def run(seconds: float, bound: float, rates: list[int]) -> None:
    with scratch("launchdeck-bench-read-") as tmp:
        repo = script_repo(tmp / "repo", "gen.py", "import os; os.makedirs('dist')\n")
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            project_id = await seed(session, dev, repo)
            path = f"/api/v1/projects/{project_id}/builds?limit={BUILDS}"
            async with session.get(dev.api_url + path, headers=dev.headers) as resp:
                body = await resp.read()
            assert len(json.loads(body)["items"]) == BUILDS
            (tmp / "body.json").write_bytes(body)
            bare = subprocess.Popen(  # noqa: ASYNC220 (start-up, once)
                [sys.executable, "-m", "bench._bare_http", str(tmp / "body.json")],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert bare.stdout is not None
                bare_url = f"http://127.0.0.1:{bare.stdout.readline().strip()}{path}"
                print(f"GET {path}: {len(body)} bytes; p99 bound {bound:.0f} ms")
                ours = await climb(
                    "launchdeck", dev.api_url + path, dev.headers, rates, seconds, bound
                )
                base = await climb("bare", bare_url, {}, rates, seconds, bound)
                ours_wrk = wrk_rps(dev.api_url + path, dev.headers, int(seconds))
                base_wrk = wrk_rps(bare_url, {}, int(seconds))
            finally:
                bare.kill()
                bare.wait()
    ours_max, ours_why = max_sustained(ours, bound)
    base_max, base_why = max_sustained(base, bound)
    print(f"launchdeck: max sustained {ours_max:,.0f} req/s (stopped: {ours_why})")
    print(f"bare aiohttp: max sustained {base_max:,.0f} req/s (stopped: {base_why})")
    if base_max:
        print(f"ratio launchdeck/bare (open loop, sustained): {ours_max / base_max:.2f}")
    if ours_wrk and base_wrk:
        print(
            f"wrk saturated: launchdeck {ours_wrk[0]:,.0f} req/s (p99 {ours_wrk[1]:.1f} ms), "
            f"bare {base_wrk[0]:,.0f} req/s (p99 {base_wrk[1]:.1f} ms); "
            f"ratio {ours_wrk[0] / base_wrk[0]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--p99-bound-ms", type=float, default=100.0)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    args = parser.parse_args()
    rates = [int(x) for x in args.rates.split(",")]
    asyncio.run(run(args.seconds, args.p99_bound_ms, rates))


if __name__ == "__main__":
    main()
