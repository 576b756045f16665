"""Cancelling builds on the whole platform (every service a process, each its own NATS user): a
queued build never runs — the worker that pulls its job later drops it —, and `launchdeck
cancel` of a running build has its whole process group (and what escaped it) gone within 5 s and
the build `cancelled`, its log ending with `■ Cancelled`."""

from __future__ import annotations

import time

from tests.build_worker.processes import build_processes
from tests.e2e.support import Api, create_project, launchdeck
from tests.polling import eventually
from tests.support import GitRepoFactory

# Two children in the build's process group and one double-forked escapee, then a long wait.
SPAWNER = """\
import os, subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            for _ in range(2)]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
print("ready", flush=True)
time.sleep(600)
"""
TOML = """\
[build]
build_command = "python3 spawn.py"
output_dir = "."
"""


async def test_cancel_queued_and_running_builds(api: Api, make_git_repo: GitRepoFactory) -> None:
    """Build 1 runs (the worker's only slot), build 2 waits in the queue. Cancelling build 2:
    `cancelled` at once. `launchdeck cancel slow#1`: its processes are gone within 5 s, it ends
    `cancelled`. The worker then pulls build 2's job and drops it: its log is one line, no
    clone. A second cancel is a 409."""
    repo = make_git_repo({"spawn.py": SPAWNER, "launchdeck.toml": TOML, "index.html": "x"})
    await create_project(api, "slow", repo)
    status, first = await api.call("POST", "/projects/slow/builds")
    assert status == 202, first
    status, second = await api.call("POST", "/projects/slow/builds")
    assert status == 202, second

    async def first_running() -> list[int] | None:
        _, log = await api.call("GET", f"/builds/{first['id']}/logs")
        pids = build_processes(first["id"])
        return pids if "ready" in log.splitlines() and len(pids) >= 4 else None

    pids = await eventually("build 1 to run its processes", first_running, timeout_s=60)
    _, queued = await api.call("GET", f"/builds/{second['id']}")
    assert queued["status"] == "queued"

    status, cancelled = await api.call("POST", f"/builds/{second['id']}/cancel")
    assert status == 202, cancelled
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "cancelled")

    asked = time.monotonic()
    result = await launchdeck(api.platform, "cancel", "slow#1")
    assert result.code == 0, result
    assert result.out[-1] == "Build #1 cancelled: its processes were stopped"
    gone = [pid for pid in pids if pid not in build_processes(first["id"])]
    assert gone == pids, f"still running after {time.monotonic() - asked:.1f}s"
    assert time.monotonic() - asked < 5 + 3  # the stop, and the CLI's polling interval
    finished = await api.wait_build(first["id"])
    assert (finished["status"], finished["reason"]) == ("cancelled", "cancelled")
    _, log = await api.call("GET", f"/builds/{first['id']}/logs")
    assert log.splitlines()[-1].startswith("■ Cancelled after ")

    def dropped() -> bool:
        return any(
            f'"build_id": "{second["id"]}"' in line and '"build_already_finished"' in line
            for line in api.platform.logs("build_worker").splitlines()
        )

    await eventually("the worker to pull build 2's job and drop it", dropped, timeout_s=60)
    _, log = await api.call("GET", f"/builds/{second['id']}/logs")
    assert log == "■ Cancelled before it started\n"
    assert build_processes(second["id"]) == []
    _, still = await api.call("GET", f"/builds/{second['id']}")
    assert still["status"] == "cancelled"

    status, again = await api.call("POST", f"/builds/{first['id']}/cancel")
    assert status == 409, again
