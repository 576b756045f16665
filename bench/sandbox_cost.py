"""Sandbox cost: the build time (the build's own `started_at` → `finished_at`: clone, install,
build, package) of the bundled example (`examples/static-site`, plain HTML: no command runs) and
of a small npm project (`npm ci` of one small dependency, then `npm run build`, a node script
using it), with builds in bubblewrap (the default) against `LAUNCHDECK_BUILD_SANDBOX=none`.

Baseline: the same builds, same machine, same run, with `LAUNCHDECK_BUILD_SANDBOX=none`. Two
platforms run side by side, one per mode, and their builds alternate one by one (in turns
starting with either), so whatever else the machine does weighs on both alike.

    uv run python -m bench.sandbox_cost [--runs 10]

Every npm build changes package.json (a new dependency-cache key), so `npm ci` really installs
each time; after a first build that is not counted, its downloads come from the project's
download cache (which the sandbox binds read-write), keeping the registry's latency out of the
figures. Needs npm and the registry (the machine's proxy) to make the lock file once.

Also: what the sandbox adds to one command, `true` run through the build-worker's `run_command`
in and out of the sandbox, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
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

from bench._platform import Dev, api, git, median, running_platform, scratch
from launchdeck.build_worker.run import build_env, run_command
from launchdeck.libs.launcher.sandbox import detect_sandbox

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "static-site"
MODES = ("bwrap", "none")
BUILD_JS = """\
const fs = require("fs");
const isNumber = require("is-number");
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/index.html", `<h1>${isNumber(42) ? "built" : "broken"}</h1>`);
"""


def package_json(run: int) -> str:
    return json.dumps(
        {
            "name": "sandbox-bench",
            "version": "1.0.0",
            "private": True,
            "description": f"run {run}",  # a new dependency-cache key for every build
            "scripts": {"build": "node build.js"},
            "dependencies": {"is-number": "^7.0.0"},
        },
        indent=2,
    )


def example_repo(repo: Path) -> Path:
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")
    return repo


def npm_repo(repo: Path) -> Path:
    repo.mkdir()
    (repo / "build.js").write_text(BUILD_JS)
    (repo / "package.json").write_text(package_json(0))
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (repo / ".gitignore").write_text("node_modules/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "npm bench")
    return repo


def bump(repo: Path, run: int) -> None:
    (repo / "package.json").write_text(package_json(run))
    git(repo, "commit", "-q", "-am", f"run {run}")


async def build_seconds(session: aiohttp.ClientSession, dev: Dev, project: str) -> float:
    """Build `project` (no deploy) and return its build time as the platform recorded it."""
    build = await api(session, dev, "POST", f"/projects/{project}/builds", {"deploy": False})
    deadline = time.monotonic() + 300
    while True:
        build = await api(session, dev, "GET", f"/builds/{build['id']}")
        if build["status"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"build of {project} did not finish")
        await asyncio.sleep(0.1)
    if build["status"] != "succeeded":
        raise RuntimeError(f"build of {project} {build['status']}: {build['error']}")
    started = datetime.fromisoformat(build["started_at"])
    finished = datetime.fromisoformat(build["finished_at"])
    return (finished - started).total_seconds()


def sandbox_of(dev: Dev) -> str:
    """What the worker said at start (its warnings reach dev.log at the bench's log level)."""
    text = (dev.state_dir / "dev.log").read_text(errors="replace")
    return "none" if "build_sandbox_unavailable" in text else "bwrap"


async def set_up(session: aiohttp.ClientSession, dev: Dev, example: Path, npm: Path) -> None:
    for name, repo, build in (("example", example, {}), ("npm", npm, {"output_dir": "dist"})):
        body = {"name": name, "repo_url": str(repo), "build": build}
        await api(session, dev, "POST", "/projects", body)


async def command_overhead(tmp: Path, runs: int = 50) -> tuple[list[float], list[float]]:
    """Seconds `true` takes through run_command, sandboxed and not, alternately."""
    sandbox = detect_sandbox("bwrap")
    workdir = tmp / "builds" / "overhead-1-00000000"
    for sub in ("src", "home"):
        (workdir / sub).mkdir(parents=True)
    env = build_env(workdir / "home")
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs + 1):
        # A new attempt's sandbox each time: its options are computed once per attempt.
        jail = sandbox.for_build(workdir=workdir, writable=(), private=(tmp / "builds",))
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            took = await run_command(
                ["true"],
                cwd=workdir / "src",
                env=env,
                sink=lambda stream, lines: None,
                timeout_s=30,
                sandbox=jail if which == 0 else None,
            )
            if i > 0:
                times[which].append(took)
    return times


def fmt(values: list[float]) -> str:
    return (
        f"median {median(values) * 1000:.0f} ms "
        f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, n={len(values)})"
    )


async def run(runs: int) -> None:
    results: dict[str, dict[str, list[float]]] = {m: {"example": [], "npm": []} for m in MODES}
    with scratch("launchdeck-bench-sandbox-") as tmp:
        in_sandbox, plain = await command_overhead(tmp)
        example = example_repo(tmp / "example")
        npm = npm_repo(tmp / "npm")
        async with (
            running_platform({"LAUNCHDECK_BUILD_SANDBOX": "bwrap"}) as sandboxed,
            running_platform({"LAUNCHDECK_BUILD_SANDBOX": "none"}) as unsandboxed,
            aiohttp.ClientSession() as session,
        ):
            devs = {"bwrap": sandboxed, "none": unsandboxed}
            for mode, dev in devs.items():
                await set_up(session, dev, example, npm)
                if await asyncio.to_thread(sandbox_of, dev) != mode:
                    raise RuntimeError(f"the {mode} platform's worker is not in mode {mode}")
            version = 0
            for i in range(runs + 1):  # run 0 is not counted: first clone, npm downloads
                order = MODES if i % 2 == 0 else MODES[::-1]
                for project in ("example", "npm"):
                    if project == "npm":
                        version += 1
                        bump(npm, version)  # one commit, built by both platforms
                    for mode in order:
                        took = await build_seconds(session, devs[mode], project)
                        if i > 0:
                            results[mode][project].append(took)
    print(
        f"one command (`true` through run_command): sandboxed {median(in_sandbox) * 1000:.1f} ms, "
        f"unsandboxed {median(plain) * 1000:.1f} ms (medians of {len(plain)})"
    )
    for project, label in (
        ("example", "bundled example (static, no command)"),
        ("npm", "npm project (npm ci + npm run build)"),
    ):
        sandboxed_s, baseline_s = results["bwrap"][project], results["none"][project]
        print(f"{label}:")
        print(f"  sandboxed (bwrap):        {fmt(sandboxed_s)}")
        print(f"  baseline (SANDBOX=none):  {fmt(baseline_s)}")
        paired = [a / b for a, b in zip(sandboxed_s, baseline_s, strict=True)]
        print(
            f"  ratio sandboxed/baseline: {median(sandboxed_s) / median(baseline_s):.2f}x of the "
            f"medians, {median(paired):.2f}x the median of each pair of builds made in turn"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="counted builds per project and mode")
    args = parser.parse_args()
    asyncio.run(run(args.runs))


if __name__ == "__main__":
    main()
