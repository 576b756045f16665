"""`LAUNCHDECK_BUILD_CONCURRENCY` is honoured exactly: a worker process with 2 and 4 slow builds
queued runs 2 at a time, never 3 — measured by the builds themselves (each prints its own start
and end times) and by the worker's status endpoint, polled meanwhile. A NATS server of the
test's own, so no other test's jobs share the queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildConfig, BuildRequested, EnvReply
from launchdeck.contracts.subjects import (
    SERVICE_BUILD_WORKER,
    SUBJECT_BUILD_JOBS,
    SUBJECT_ENV_REQUESTS,
    service_status_subject,
)
from tests.build_worker.streams import build_events, log_lines
from tests.libs.support import RestartableNats
from tests.nats_auth import login_url
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env
from tests.support import GitRepoFactory

CONCURRENCY = 2
BUILDS = 4
# Each build's own clock: when its command started and ended (wall-clock seconds).
SLOW = """\
import time
print("start", time.time(), flush=True)
time.sleep(2.5)
print("end", time.time(), flush=True)
"""
TOML = """\
[build]
build_command = "python3 slow.py"
output_dir = "."
"""


@pytest.fixture
def worker_process(restartable_nats: RestartableNats, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A build-worker process on the test's own NATS, as its own user, 2 builds at a time."""
    env = service_env(
        "build-worker",
        tmp_path / "state",
        NATS_URL=login_url(restartable_nats.plain_url, "build-worker"),
        LAUNCHDECK_ALLOW_LOCAL_REPOS="true",
        LAUNCHDECK_BUILD_CONCURRENCY=str(CONCURRENCY),
        LAUNCHDECK_BUILD_CACHE="false",
    )
    worker = ServiceProcess("build-worker", env, tmp_path / "worker.log")
    yield worker
    worker.kill()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that were open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, step in edges:  # at a tie an end (-1) sorts before a start: touching is not overlap
        running += step
        most = max(most, running)
    return most


async def test_a_worker_runs_exactly_its_concurrency_at_once(
    own_nc: Client,
    own_js: JetStreamContext,
    worker_process: ServiceProcess,
    make_git_repo: GitRepoFactory,
) -> None:
    """4 slow builds queued on a worker with concurrency 2: at most 2 ran at any instant, and 2
    did run side by side (the limit is used, not undercut); every build succeeded."""
    repo = make_git_repo({"slow.py": SLOW, "launchdeck.toml": TOML, "index.html": "x"})
    project = str(uuid.uuid4())
    commands = [
        BuildRequested(
            build_id=str(uuid.uuid4()),
            project_id=project,
            project_name="slow",
            number=n,
            repo_url=str(repo),
            ref="main",
            config=BuildConfig(),
        )
        for n in range(1, BUILDS + 1)
    ]
    for cmd in commands:
        await own_js.publish(SUBJECT_BUILD_JOBS, encode(cmd), headers={"Nats-Msg-Id": cmd.build_id})

    # The control-api's answer for builds of a project without env vars (`ld.rpc.env`): the
    # worker asks it at the start of each build.
    async def no_env_vars(msg: Msg) -> None:
        await msg.respond(encode(EnvReply()))

    env_replies = await own_nc.subscribe(SUBJECT_ENV_REQUESTS, cb=no_env_vars)
    worker_process.start()
    await worker_process.wait_for("build_worker_ready", concurrency=CONCURRENCY)

    running_seen: list[int] = []

    async def poll_status() -> None:
        while True:
            try:
                reply = await own_nc.request(
                    service_status_subject(SERVICE_BUILD_WORKER), b"", timeout=2
                )
                running_seen.append(len(json.loads(reply.data)["builds_running"]))
            except TimeoutError:
                pass
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll_status())

    async def all_finished() -> bool:
        for cmd in commands:
            events = await build_events(own_js, cmd.project_id, cmd.build_id)
            if not events or events[-1].status not in ("succeeded", "failed"):
                return False
        return True

    try:
        await eventually("every build to finish", all_finished, timeout_s=120)
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await env_replies.unsubscribe()

    intervals = []
    for cmd in commands:
        events = await build_events(own_js, cmd.project_id, cmd.build_id)
        assert events[-1].status == "succeeded", events[-1].error
        said = {
            line.line.split()[0]: float(line.line.split()[1])
            for line in await log_lines(own_js, cmd.build_id)
            if line.stream == "stdout"
        }
        intervals.append((said["start"], said["end"]))
    assert max_overlap(intervals) == CONCURRENCY, intervals
    assert running_seen, "the status endpoint never answered"
    assert max(running_seen) <= CONCURRENCY, running_seen
