"""The build-worker process at start: it says loudly when builds will not be sandboxed, refuses to
start when a sandbox is required and missing, and removes what a killed predecessor left."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.workspace import claim, lock_path
from launchdeck.libs.launcher.reaper import MARKER_VAR
from launchdeck.libs.processes import process_alive
from tests.build_worker.processes import wait_gone
from tests.build_worker.test_package_managers import bin_dir
from tests.build_worker.test_sandbox import running, tokens
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env

# A stand-in for a worker in the middle of a build: it claims a work directory as the handler
# does and runs an unsandboxed command there through run_command, which leaves a `setsid`
# escapee and a plain child behind, both carrying the build's marker; then it hangs until it
# is killed with SIGKILL (nothing of it gets to clean up).
MID_BUILD = """\
import asyncio, sys
from pathlib import Path
from launchdeck.build_worker.run import each_line, run_command
from launchdeck.build_worker.workspace import claim

workdir = Path(sys.argv[1])
claim(workdir)
(workdir / "src").mkdir()
script = f"setsid sleep {sys.argv[2]} & sleep {sys.argv[3]} & echo started; wait"
asyncio.run(run_command(["sh", "-c", script], cwd=workdir / "src", env={"PATH": "/usr/bin:/bin"},
                        sink=each_line(lambda stream, line: print(line, flush=True)),
                        timeout_s=600,
                        marker=str(workdir)))
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def worker_process(
    nats_url: str, js: JetStreamContext, state: Path, tmp_path: Path
) -> Iterator[ServiceProcess]:
    """A build-worker process on the test NATS (its streams provisioned by `js`)."""
    env = service_env("build-worker", state, NATS_URL=nats_url)
    worker = ServiceProcess("build-worker", env, tmp_path / "worker.log")
    yield worker
    worker.kill()


async def test_a_worker_removes_what_a_killed_predecessor_left(
    worker_process: ServiceProcess, state: Path
) -> None:
    """A worker SIGKILLed mid-build leaves its work directory, its lock file and the build's
    processes (one escaped with setsid) behind; the next worker kills those processes and removes
    the directory at start. An attempt of a worker that is alive (its lock held) stays."""
    build_dir = state / "builds"
    dead = build_dir / f"{uuid.uuid4()}-1-0badf00d"
    escapee_token, child_token = tokens()
    predecessor = subprocess.Popen(  # noqa: ASYNC220 (started once, never waited on here)
        [sys.executable, "-c", MID_BUILD, str(dead), escapee_token, child_token],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        escapees = await eventually("the setsid escapee", lambda: running(escapee_token))
        children = await eventually("the build's child", lambda: running(child_token))
    finally:
        predecessor.kill()
        predecessor.wait()
    assert all(process_alive(pid) for pid in escapees + children)  # they outlived it

    live = build_dir / f"{uuid.uuid4()}-1-0000cafe"
    live_lock = await asyncio.to_thread(claim, live)  # held by this test, as by a live worker
    live_token, _ = tokens()
    live_child = subprocess.Popen(  # noqa: ASYNC220
        ["sleep", live_token], env={**os.environ, MARKER_VAR: str(live)}, start_new_session=True
    )
    try:
        worker_process.start()
        removed = await worker_process.wait_for("build_leftovers_removed")
        assert removed["workdirs"] == [dead.name]
        # (A subset: a failed earlier run of this test, in the same basetemp, may have left more.)
        assert set(escapees + children) <= set(removed["killed_pids"])
        for pid in escapees + children:
            await wait_gone(pid)
        assert not dead.exists()
        assert not lock_path(dead).exists()
        assert live.is_dir()
        assert live_child.poll() is None
        await worker_process.wait_for("build_worker_ready")
    finally:
        live_child.kill()
        live_child.wait()
        fcntl.flock(live_lock, fcntl.LOCK_UN)
        os.close(live_lock)


@pytest.mark.parametrize(
    ("sandbox", "reason"),
    [
        ("none", "LAUNCHDECK_BUILD_SANDBOX=none"),
        ("auto", "bubblewrap (bwrap) is not installed on this worker"),
    ],
)
async def test_a_worker_without_a_sandbox_warns_at_start(
    worker_process: ServiceProcess, tmp_path: Path, sandbox: str, reason: str
) -> None:
    """Set to `none`, or `auto` on a machine without bubblewrap (a PATH without bwrap), the
    worker starts and its first lines include a warning that builds are not sandboxed."""
    no_bwrap = bin_dir(tmp_path / "no-bwrap", "git")  # gitpython wants git at import
    worker_process.env.update(LAUNCHDECK_BUILD_SANDBOX=sandbox, PATH=no_bwrap)
    worker_process.start()
    warning = await worker_process.wait_for("build_sandbox_unavailable")
    assert warning["level"] == "warning"
    assert warning["reason"] == reason
    assert "WITHOUT a sandbox" in warning["consequence"]
    ready = await worker_process.wait_for("build_worker_ready")
    assert ready["sandbox"] == "none"


async def test_a_worker_with_bwrap_says_builds_are_sandboxed(
    worker_process: ServiceProcess,
) -> None:
    worker_process.start()
    ready = await worker_process.wait_for("build_worker_ready")
    assert ready["sandbox"] == "bwrap"
    assert not [e for e in worker_process.events() if e["event"] == "build_sandbox_unavailable"]


async def test_a_required_sandbox_that_is_missing_stops_the_worker(
    worker_process: ServiceProcess, tmp_path: Path
) -> None:
    """`LAUNCHDECK_BUILD_SANDBOX=bwrap` without bubblewrap: exit code 1 at start, saying why."""
    no_bwrap = bin_dir(tmp_path / "no-bwrap", "git")
    worker_process.env.update(LAUNCHDECK_BUILD_SANDBOX="bwrap", PATH=no_bwrap)
    worker_process.start()
    assert worker_process.proc is not None
    assert await asyncio.to_thread(worker_process.proc.wait, 20) == 1
    assert worker_process.output.strip() == (
        "build-worker: LAUNCHDECK_BUILD_SANDBOX=bwrap, but bubblewrap (bwrap) is not installed "
        "on this worker (install the bubblewrap package; it needs unprivileged user namespaces)"
    )
