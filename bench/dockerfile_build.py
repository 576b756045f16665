"""A Dockerfile app (a small aiohttp server, `FROM` the local base image) built through the real
build-worker (its BuildWorker on a real NATS, as tests/build_worker drive it, podman building):
cold — a new project, and a first `RUN` line unique to this run, so that no layer of it is in the
engine's cache (the worker has no `--no-cache`; this is its equivalent: `pip install aiohttp`
runs again) — against a rebuild after a source-only change (server.py edited and committed: the
pip layer comes from the layer cache the worker keeps per project).

Figures per build: command → `succeeded` event; the split from the build log's timestamps —
engine build (`▶ Image build` → `✔ Image built`) and save + package + upload (`▶ Saving the
image` → `✔ Packaged the release`); the artifact's size (and the image's). Baseline: the cold
build, same machine, same run; ratio cached/cold.

    uv run python -m bench.dockerfile_build

Needs podman and the local base image (deploy/images/make-base.sh, run here). The cold build
downloads aiohttp from PyPI, so it measures the network too. The project's images are removed
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from nats.js import JetStreamContext

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import git, scratch
from launchdeck.build_worker.container_engine import image_repository
from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import (
    BuildConfig,
    BuildRequested,
    BuildStatusChanged,
    LogBatch,
    LogLine,
)
from launchdeck.devservers import start_nats
from launchdeck.libs.jetstream import connect, provision
from launchdeck.libs.jobs import Delivery, Outcome

ROOT = Path(__file__).resolve().parents[1]
SERVER = """\
import os
from aiohttp import web

async def index(_r): return web.Response(text="{text}")

app = web.Application()
app.add_routes([web.get("/", index)])
web.run_app(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
"""
# `{token}`: a first layer no earlier build made, so every layer after it is built cold.
DOCKERFILE = """\
FROM {base}
RUN echo "bench cold build {token}"
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -q 'aiohttp>=3.10,<4'
WORKDIR /app
COPY server.py /app/server.py
EXPOSE 8080
CMD ["/venv/bin/python", "/app/server.py"]
"""
IMAGE_LINE = re.compile(
    r"✔ Image sha256:\S+ \((?P<size>[^,]+) unpacked, (?P<archive>[^;]+) archive"
)


def base_image(engine: str) -> str:
    out = subprocess.run(
        [str(ROOT / "deploy/images/make-base.sh")],
        env={**os.environ, "CONTAINER_ENGINE": engine},
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    return out.strip().splitlines()[-1]


@dataclass
class Build:
    total_s: float  # the command handled → its `succeeded` event
    engine_s: float  # `▶ Image build` → `✔ Image built`
    package_s: float  # `▶ Saving the image` → `✔ Packaged the release` (save, pack, upload)
    artifact_bytes: int
    image: str  # the image's sizes, as the log gives them
    cached_steps: int  # `--> Using cache` lines


async def read_all(js: JetStreamContext, stream: str, subject: str) -> list[bytes]:
    """Every message stored on `subject` so far (the build is over: nothing more comes)."""
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    out: list[bytes] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            out.append(msg.data)
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await sub.unsubscribe()


def at(lines: list[LogLine], prefix: str) -> datetime:
    return next(line.ts for line in lines if line.line.startswith(prefix))


async def build(
    worker: BuildWorker, js: JetStreamContext, repo: Path, project: str, project_id: str
) -> Build:
    cmd = BuildRequested(
        build_id=str(uuid.uuid4()),
        project_id=project_id,
        project_name=project,
        number=1,
        repo_url=str(repo),
        ref="main",
        config=BuildConfig(),
    )
    delivery = Delivery(num_delivered=1, max_deliver=1, subject=s.SUBJECT_BUILD_JOBS, stream_seq=1)
    started = time.monotonic()
    outcome = await worker.handle_build(cmd, delivery)
    total = time.monotonic() - started
    events = [
        decode(data, BuildStatusChanged)
        for data in await read_all(
            js, s.STREAM_EVENTS, s.build_event_subject(project_id, cmd.build_id)
        )
    ]
    lines = [
        line
        for data in await read_all(js, s.STREAM_LOGS, s.build_log_subject(cmd.build_id))
        for line in decode(data, LogBatch).lines
    ]
    final = events[-1]
    if outcome is not Outcome.ACK or final.status != "succeeded" or final.artifact is None:
        tail = "\n".join(line.line for line in lines[-15:])
        raise RuntimeError(f"build {final.status}: {final.error}\n{tail}")
    image = next((m for line in lines if (m := IMAGE_LINE.match(line.line))), None)
    return Build(
        total_s=total,
        engine_s=(at(lines, "✔ Image built") - at(lines, "▶ Image build")).total_seconds(),
        package_s=(
            at(lines, "✔ Packaged the release") - at(lines, "▶ Saving the image")
        ).total_seconds(),
        artifact_bytes=final.artifact.size,
        image=f"{image['size']} unpacked, {image['archive']} archive" if image else "?",
        cached_steps=sum(1 for line in lines if line.line.startswith("--> Using cache")),
    )


def describe(b: Build) -> str:
    return (
        f"total {b.total_s:.1f}s (engine build {b.engine_s:.1f}s, save + package + upload "
        f"{b.package_s:.1f}s), {b.cached_steps} steps from the cache, artifact "
        f"{b.artifact_bytes / 1e6:.1f} MB (image {b.image})"
    )


def remove_images(engine: str, project: str) -> None:
    """The project's images (its cache tag and any build tag left), and so its layers."""
    out = subprocess.run(
        [engine, "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    repository = image_repository(project)
    tags = [t for t in out.split() if t.startswith((repository + ":", f"localhost/{repository}:"))]
    if tags:
        subprocess.run([engine, "rmi", "-f", *tags], capture_output=True, check=False)


async def run() -> tuple[Build, Build]:
    engine = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman")
    if not engine:
        sys.exit("dockerfile_build bench: podman is not installed")
    base = await asyncio.to_thread(base_image, engine)
    project, project_id = f"bench-df-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    with scratch("launchdeck-bench-dockerfile-") as tmp:
        repo = tmp / "repo"
        repo.mkdir()
        (repo / "Dockerfile").write_text(DOCKERFILE.format(base=base, token=uuid.uuid4().hex))
        (repo / "server.py").write_text(SERVER.format(text="hello v1"))
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v1")
        nats = start_nats(tmp / "nats")
        try:
            nc = await connect(nats.url, name="bench-dockerfile-build")
            js = nc.jetstream()
            await provision(js)
            settings = Settings(
                nats_url=nats.url,
                build_dir=tmp / "builds",
                allow_local_repos=True,
                concurrency=1,
                timeout_s=1800,
                log_max_bytes=10 * 1024 * 1024,
                container_engine=engine,
            )
            worker = BuildWorker(js, settings)
            cold = await build(worker, js, repo, project, project_id)
            print(f"  cold: {describe(cold)}", flush=True)
            (repo / "server.py").write_text(SERVER.format(text="hello v2"))
            git(repo, "commit", "-q", "-am", "v2: source only")
            cached = await build(worker, js, repo, project, project_id)
            print(f"  cached, source changed: {describe(cached)}", flush=True)
            await nc.drain()
        finally:
            nats.stop()
            await asyncio.to_thread(remove_images, engine, project)
    return cold, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    # The worker's own info lines would interleave with the figures: warnings and up only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    cold, cached = asyncio.run(run())
    print(f"baseline, cold build (no cached layer): {cold.total_s:.1f}s")
    print(f"with the layer cache after a source-only change: {cached.total_s:.1f}s")
    print(f"ratio cached/cold: {cached.total_s / cold.total_s:.2f}x")
    print(
        f"engine build: cold {cold.engine_s:.1f}s, cached {cached.engine_s:.1f}s; "
        f"save + package + upload: cold {cold.package_s:.1f}s, cached {cached.package_s:.1f}s"
    )
    print(f"artifact: {cached.artifact_bytes / 1e6:.1f} MB (image {cached.image})")


if __name__ == "__main__":
    main()
