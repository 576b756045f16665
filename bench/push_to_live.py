"""Push-to-live: from `POST …/builds` to the first 200 with the new content at the edge.

Static site of 200 files / ~5 MB, median of 10 runs, against a baseline doing the same steps by
hand in one shell script (git clone, tar, extract, symlink swap) on the same machine.

    uv run python -m bench.push_to_live [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

if not __package__:
    # Run as a script (`python bench/<name>.py`): Python put bench/ on sys.path, not the
    # repository root, so the `bench` package (its _platform) needs the root added.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import api, git, median, running_platform, scratch

FILES = 200
TOTAL_BYTES = 5 * 1024 * 1024

BASELINE = r"""
set -euo pipefail
work=$(mktemp -d)
git clone -q --depth 1 "file://$1" "$work/src"
tar -czf "$work/release.tar.gz" -C "$work/src" --exclude=.git .
mkdir -p "$2/releases/$3"
tar -xzf "$work/release.tar.gz" -C "$2/releases/$3"
ln -sfn "$2/releases/$3" "$2/current.tmp"
mv -T "$2/current.tmp" "$2/current"
cat "$2/current/index.html" > /dev/null
rm -rf "$work"
"""


def make_site(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    per_file = TOTAL_BYTES // FILES
    assets = repo / "assets"
    assets.mkdir()
    for i in range(FILES - 1):
        # Incompressible-ish content, like images and minified bundles.
        (assets / f"file{i:03}.bin").write_bytes(os.urandom(per_file))
    write_index(repo, 0)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "site")


def write_index(repo: Path, run: int) -> str:
    marker = f"run-{run}-{time.time_ns()}"
    (repo / "index.html").write_text(f"<!doctype html><h1>{marker}</h1>")
    return marker


def baseline(repo: Path, runs: int) -> list[float]:
    times = []
    with scratch("launchdeck-baseline-") as out:
        for i in range(runs):
            start = time.perf_counter()
            argv = ["bash", "-c", BASELINE, "bash", str(repo), str(out), f"r{i}"]
            subprocess.run(argv, check=True)
            times.append(time.perf_counter() - start)
    return times


async def launchdeck_runs(repo: Path, runs: int) -> list[float]:
    times = []
    async with running_platform() as dev, aiohttp.ClientSession() as session:
        await api(session, dev, "POST", "/projects", {"name": "bench", "repo_url": str(repo)})
        for i in range(runs):
            marker = write_index(repo, i + 1)
            git(repo, "commit", "-qam", f"run {i + 1}")
            start = time.perf_counter()
            await api(session, dev, "POST", "/projects/bench/builds", {})
            deadline = start + 120
            while True:
                try:
                    async with session.get(
                        f"http://127.0.0.1:{dev.edge_port}/", headers={"Host": "bench.localhost"}
                    ) as resp:
                        if resp.status == 200 and marker in await resp.text():
                            break
                except aiohttp.ClientError:
                    pass
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"run {i + 1} never went live")
                await asyncio.sleep(0.005)
            times.append(time.perf_counter() - start)
            print(f"  run {i + 1}: {times[-1] * 1000:.0f} ms", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with scratch("launchdeck-bench-site-") as tmp:
        repo = tmp / "site"
        make_site(repo)
        base = baseline(repo, args.runs)
        print(f"baseline (clone+tar+extract+symlink by hand): median {median(base) * 1000:.0f} ms")
        ours = asyncio.run(launchdeck_runs(repo, args.runs))
    print(
        f"launchdeck push-to-live ({FILES} files, {TOTAL_BYTES >> 20} MB): "
        f"median {median(ours) * 1000:.0f} ms, min {min(ours) * 1000:.0f} ms, "
        f"max {max(ours) * 1000:.0f} ms"
    )
    print(f"ratio launchdeck/baseline: {median(ours) / median(base):.1f}x")


if __name__ == "__main__":
    main()
