"""The platform on a 3-node NATS cluster, as docs/operations.md tells users to run it: a
comma-separated `NATS_URL`, 3 replicas. Killing (kill -9) the node that leads LOGS and then the
one that leads BUILDS in the middle of a build stops nothing: the build finishes on its first
attempt, its log is complete, the site deploys, and no service is restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launchdeck.contracts.subjects import STREAM_BUILDS, STREAM_EVENTS, STREAM_LOGS
from launchdeck.devservers import NatsCluster
from launchdeck.libs.jetstream import connect
from tests.e2e.support import Api, Platform, create_project, launch_platform, read_ws
from tests.nats_auth import operator_url
from tests.nats_cluster import MakeNatsCluster, new_leader, stream_leader, stream_replicas
from tests.polling import eventually
from tests.support import GitRepoFactory

LINES = 150
# A build that prints steadily for about 15 s, long enough to lose two leaders in the middle.
SLOW_BUILD = f"""\
import os, sys, time
for i in range(1, {LINES} + 1):
    print(f"line {{i}}", flush=True)
    time.sleep(0.1)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>Survived</h1>")
"""


async def kill_leader(cluster: NatsCluster, js: Any, stream: str) -> str:
    """kill -9 the node leading `stream`; return its name once another node leads it."""
    leader = await eventually(f"{stream} to have a leader", lambda: stream_leader(js, stream))
    await asyncio.to_thread(cluster.node(leader).kill)
    await new_leader(js, stream, instead_of=leader)
    return leader


@pytest.mark.timeout(240)
async def test_a_build_survives_losing_the_logs_leader_then_the_builds_leader(
    make_nats_cluster: MakeNatsCluster,
    make_git_repo: GitRepoFactory,
    database_url: str,
    tmp_path: Path,
) -> None:
    cluster = await asyncio.to_thread(make_nats_cluster, 3)
    repo = make_git_repo({"build.py": SLOW_BUILD})
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    async with (
        launch_platform(
            state_dir,
            database_url,
            cluster.url,
            nats_logs=[node.log_file for node in cluster.nodes if node.log_file],
        ) as platform,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, platform)
        pids = {name: proc.pid for name, proc in platform.processes.items()}
        nc = await connect(operator_url(cluster.url), name="launchdeck-tests-cluster")
        js = nc.jetstream()
        try:
            for stream in (STREAM_LOGS, STREAM_BUILDS, STREAM_EVENTS):
                assert await stream_replicas(js, stream) == 3  # chosen from the cluster's size

            await create_project(api, "survivor", repo, build={"build_command": "python3 build.py"})
            status, build = await api.call("POST", "/projects/survivor/builds", {})
            assert status == 202, build
            seen: list[dict[str, Any]] = []
            viewer = asyncio.create_task(read_ws(session, api.log_ws_url(build["id"]), seen))

            def printed(n: int) -> bool:
                return any(f["line"] == f"line {n}" for f in seen)

            await eventually("the build to be printing", lambda: printed(20), timeout_s=60)
            lost = await kill_leader(cluster, js, STREAM_LOGS)
            await asyncio.to_thread(cluster.node(lost).start)  # back, as the same peer
            await asyncio.to_thread(cluster.wait_ready)
            await eventually("lines after the first loss", lambda: printed(80), timeout_s=60)
            await kill_leader(cluster, js, STREAM_BUILDS)

            finished = await api.wait_build(build["id"], timeout_s=120)
            assert (finished["status"], finished["attempt"]) == ("succeeded", 1), finished
            lines, end = await asyncio.wait_for(viewer, 60)
            assert end["status"] == "succeeded"
            assert [f["seq"] for f in lines] == list(range(1, len(lines) + 1))
            printed_lines = [f["line"] for f in lines if f["line"].startswith("line ")]
            assert printed_lines == [f"line {i}" for i in range(1, LINES + 1)]  # none lost

            await api.wait_build_deployment(build["id"], timeout_s=60)
            status, body = await api.edge_get("survivor")
            assert (status, "<h1>Survived</h1>" in body) == (200, True)
            assert_not_restarted(platform, pids)
        finally:
            await nc.close()


def assert_not_restarted(platform: Platform, pids: dict[str, int]) -> None:
    """Every service is the very process that was started: none crashed or was restarted."""
    for name, proc in platform.processes.items():
        assert proc.poll() is None, f"{name} exited:\n{platform.logs(name)[-3000:]}"
        assert proc.pid == pids[name]
