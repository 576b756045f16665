"""Build log overhead: what streaming a build's output costs the build.

A build command prints 200,000 lines (compiler-like, ~43 bytes each: 8.6 MB, under the default
10 MiB log cap) as fast as it can. Through the worker, every line is read from its pipes,
numbered, masked, batched and stored in the LOGS stream before the build moves on. Measured, per
run:

- through the worker: from the `▶ Build:` line (the command is about to start) to the
  `▶ Packaging` line (the command ended, every line of it is stored, the `packaging` event
  too), from the build's own log timestamps; and the whole build (`started_at` →
  `finished_at`: clone, sandbox, packaging and events included);
- baseline (the issue's): the same command run directly, its output to /dev/null;
- and a second one that isolates the log from the worker's fixed costs: the same build whose
  command sends the same output to /dev/null itself (`sh -c '… > /dev/null'`), same step span.

Runs alternate (log build, silent build, direct), medians reported, and the median of each
run's own ratio (the three measured one after the other: steadier on a busy machine); every run
checks that all 200,000 lines were stored, in order, none dropped.

    uv run python -m bench.build_log_overhead [--lines 200000] [--runs 5] [--work 0]

`--work N` has the command do N turns of a busy loop before each line, like a build that works
between its lines (`--work 20` makes the command alone take about twice as long).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp

if not __package__:
    # Run as a script (`python bench/<name>.py`): Python put bench/ on sys.path, not the
    # repository root, so the `bench` package (its _platform) needs the root added.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import Dev, api, median, running_platform, scratch, script_repo
from launchdeck.build_worker.run import build_path

SCRIPT = """\
import os, sys
n, work = int(sys.argv[1]), int(sys.argv[2])
write = sys.stdout.write
for i in range(n):
    for _ in range(work):  # --work: what a real build does between two lines (0: nothing)
        pass
    write(f"[{i:6d}/{n}] compiled src/module_{i % 997:03d}.ts\\n")
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>log overhead bench</h1>")
"""


def direct_seconds(repo: Path, lines: int, work: int) -> float:
    """The command alone, its output to /dev/null, with the PATH builds get (the same
    `python3`: not this process's virtualenv); the interpreter's start included, as in the
    build."""
    started = time.perf_counter()
    with open("/dev/null", "wb") as null:
        subprocess.run(
            ["python3", "gen.py", str(lines), str(work)],
            cwd=repo,
            env={"PATH": build_path(), "HOME": str(repo.parent)},
            stdout=null,
            check=True,
            timeout=300,
        )
    return time.perf_counter() - started


async def finished_build(session: aiohttp.ClientSession, dev: Dev, project: str) -> dict[str, str]:
    build = await api(session, dev, "POST", f"/projects/{project}/builds", {"deploy": False})
    deadline = time.monotonic() + 600
    while build["status"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"build of {project} did not finish")
        await asyncio.sleep(0.1)
        build = await api(session, dev, "GET", f"/builds/{build['id']}")
    if build["status"] != "succeeded":
        raise RuntimeError(f"build of {project} {build['status']}: {build['error']}")
    return build


async def log_of(session: aiohttp.ClientSession, dev: Dev, build_id: str) -> list[dict[str, str]]:
    headers = {**dev.headers, "Accept": "application/x-ndjson"}
    url = f"{dev.api_url}/api/v1/builds/{build_id}/logs"
    async with session.get(url, headers=headers) as resp:
        resp.raise_for_status()
        return [json.loads(line) for line in (await resp.text()).splitlines() if line]


def step_seconds(log: list[dict[str, str]]) -> float:
    """`▶ Build:` → `▶ Packaging`, by the log's own timestamps."""

    def ts(prefix: str) -> datetime:
        line = next(x for x in log if x["stream"] == "system" and x["line"].startswith(prefix))
        return datetime.fromisoformat(line["ts"])

    return (ts("▶ Packaging") - ts("▶ Build:")).total_seconds()


def check_complete(log: list[dict[str, str]], lines: int) -> None:
    stdout = [x["line"] for x in log if x["stream"] == "stdout"]
    seqs = [int(x["seq"]) for x in log]
    if seqs != list(range(1, len(seqs) + 1)):
        raise RuntimeError("the log's numbering has a gap")
    if len(stdout) != lines or not stdout[-1].startswith(f"[{lines - 1:6d}/"):
        dropped = [x["line"] for x in log if x["line"].startswith("✂")]
        raise RuntimeError(
            f"{len(stdout)} of {lines} lines stored ({len(dropped)} ✂ markers, the first: "
            f"{dropped[:1]})"
        )


async def build_once(
    session: aiohttp.ClientSession, dev: Dev, project: str, lines: int | None
) -> tuple[float, float]:
    """(step seconds, whole build seconds); with `lines`, every line must have been stored."""
    build = await finished_build(session, dev, project)
    log = await log_of(session, dev, build["id"])
    if lines is not None:
        check_complete(log, lines)
    whole = datetime.fromisoformat(build["finished_at"]) - datetime.fromisoformat(
        build["started_at"]
    )
    return step_seconds(log), whole.total_seconds()


def fmt(values: list[float]) -> str:
    return (
        f"median {median(values) * 1000:,.0f} ms "
        f"(min {min(values) * 1000:,.0f}, max {max(values) * 1000:,.0f}, n={len(values)})"
    )


async def run(lines: int, runs: int, work: int) -> None:
    with scratch("launchdeck-bench-buildlog-") as tmp:
        repo = script_repo(tmp / "repo", "gen.py", SCRIPT)
        logged_step: list[float] = []
        logged_whole: list[float] = []
        silent_step: list[float] = []
        silent_whole: list[float] = []
        direct: list[float] = []
        async with running_platform() as dev, aiohttp.ClientSession() as session:
            for name, command in (
                ("logged", f"python3 gen.py {lines} {work}"),
                ("silent", f"sh -c 'python3 gen.py {lines} {work} > /dev/null'"),
            ):
                build = {"build_command": command, "output_dir": "dist"}
                body = {"name": name, "repo_url": str(repo), "build": build}
                await api(session, dev, "POST", "/projects", body)
            for i in range(runs + 1):  # run 0 warms up (first clone, page cache) and is not counted
                step, whole = await build_once(session, dev, "logged", lines)
                quiet_step, quiet_whole = await build_once(session, dev, "silent", None)
                alone = await asyncio.to_thread(direct_seconds, repo, lines, work)
                if i == 0:
                    continue
                logged_step.append(step)
                logged_whole.append(whole)
                silent_step.append(quiet_step)
                silent_whole.append(quiet_whole)
                direct.append(alone)
    doing = f", {work} turns of work before each" if work else ""
    print(f"a build command printing {lines:,} lines{doing} ({runs} runs each, all stored):")
    print(f"  through the worker, command start → last line stored: {fmt(logged_step)}")
    print(f"  through the worker, whole build:                      {fmt(logged_whole)}")
    print(f"  baseline, the command alone to /dev/null:             {fmt(direct)}")
    print(f"  same build, command's output to /dev/null (step):     {fmt(silent_step)}")
    print(f"  same build, command's output to /dev/null (whole):    {fmt(silent_whole)}")
    by_run = [a / b for a, b in zip(logged_step, direct, strict=True)]
    by_run_silent = [a / b for a, b in zip(logged_step, silent_step, strict=True)]
    print(
        f"  ratio worker/direct (step): {median(logged_step) / median(direct):.2f}x of the "
        f"medians, {median(by_run):.2f}x the median of each run's ratio (goal: 1.1x)"
    )
    print(
        f"  ratio logged/silent build: step {median(logged_step) / median(silent_step):.2f}x "
        f"({median(by_run_silent):.2f}x by run), whole build "
        f"{median(logged_whole) / median(silent_whole):.2f}x; "
        f"{lines / median(logged_step):,.0f} lines/s through the worker"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--work", type=int, default=0, help="busy-loop turns between two lines (0: print only)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.lines, args.runs, args.work))


if __name__ == "__main__":
    main()
