"""The build-worker as a process: takes jobs, answers micro pings, hands work back on SIGTERM.
It asks each build's env vars of a control-api (`ld.rpc.env`): a real env server answers here."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildRequested, BuildStatusChanged
from launchdeck.contracts.subjects import SERVICE_BUILD_WORKER, SUBJECT_BUILD_JOBS
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs import db
from tests.build_worker.processes import wait_gone
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.test_handler import INTERRUPTIBLE
from tests.env_rpc import env_server, registered_build
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env
from tests.support import GitRepoFactory

RING = KeyRing.from_secrets("build-worker-main-tests-" + uuid.uuid4().hex)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def worker_process(nats_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = service_env(
        "build-worker",
        tmp_path / "state",
        NATS_URL=nats_url,
        LAUNCHDECK_ALLOW_LOCAL_REPOS="true",
    )
    worker = ServiceProcess("build-worker", env, tmp_path / "worker.log")
    yield worker
    worker.kill()


async def wait_for_event(
    js: JetStreamContext, cmd: BuildRequested, status: str, attempt: int, worker: ServiceProcess
) -> BuildStatusChanged:
    deadline = time.monotonic() + 60
    while True:
        events = await build_events(js, cmd.project_id, cmd.build_id)
        for event in events:
            if (event.status, event.attempt) == (status, attempt):
                return event
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.output[-3000:]
        assert time.monotonic() < deadline, f"no {status} event for attempt {attempt}: {events}"
        await asyncio.sleep(0.05)


async def test_sigterm_hands_the_build_back_and_the_next_worker_finishes_it(
    nc: Client,
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nats_url: str,
    worker_process: ServiceProcess,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A worker stopped mid-build exits cleanly; the job comes back as attempt 2 and succeeds."""
    marker = tmp_path / "first-attempt.pid"
    repo = make_git_repo({"slow.py": INTERRUPTIBLE.format(marker=str(marker))})
    cmd = await registered_build(pool, RING, repo, build_command="python3 slow.py")
    async with env_server(pool, nats_url, RING):
        await sigterm_and_redelivery(nc, js, worker_process, cmd, marker)


async def sigterm_and_redelivery(
    nc: Client,
    js: JetStreamContext,
    worker_process: ServiceProcess,
    cmd: BuildRequested,
    marker: Path,
) -> None:
    # The build reports through a file outside its workspace: unsandboxed.
    worker_process.env["LAUNCHDECK_BUILD_SANDBOX"] = "none"
    worker_process.start()
    await js.publish(SUBJECT_BUILD_JOBS, encode(cmd), headers={"Nats-Msg-Id": cmd.build_id})
    await wait_for_event(js, cmd, "building", 1, worker_process)

    reply = await nc.request(f"$SRV.PING.{SERVICE_BUILD_WORKER}", b"", timeout=5)
    assert json.loads(reply.data)["name"] == SERVICE_BUILD_WORKER

    await eventually("the build command itself to start", marker.exists)
    assert await asyncio.to_thread(worker_process.stop, signal.SIGTERM, 20.0) == 0
    await wait_gone(int(await asyncio.to_thread(marker.read_text)))  # went with the worker

    worker_process.start()
    done = await wait_for_event(js, cmd, "succeeded", 2, worker_process)
    assert done.artifact is not None
    lines = await log_lines(js, cmd.build_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    text = [line.line for line in lines]
    assert "▶ Attempt 2 (previous attempt was interrupted)" in text
    assert any(t.startswith("■ The worker is shutting down") for t in text)
    assert await asyncio.to_thread(worker_process.stop, signal.SIGTERM, 20.0) == 0
