"""The platform survives its parts dying: a build-worker killed mid-build, a deploy-engine
restarted, and a deploy-engine killed together with the Caddy it started."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from launchdeck.deploy_engine.caddy import CaddyPaths, read_pid, stop_caddy
from tests.build_worker.processes import alive, build_processes
from tests.e2e.support import (
    Api,
    Platform,
    create_project,
    deploy,
    launch_platform,
    launchdeck,
    read_ws,
    site,
    wait_http_ok,
)
from tests.polling import eventually
from tests.support import GitRepoFactory

# A worker that dies stops heartbeating; its build comes back after this AckWait (the default
# 30 s would make the test wait that long). Heartbeats go every third of it.
ACK_WAIT_S = 4


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, nats_url: str, nats_log: Path
) -> AsyncIterator[Platform]:
    """The e2e platform, with a short build AckWait."""
    async with launch_platform(
        tmp_path_factory.mktemp("resilience"),
        database_url,
        nats_url,
        {"LAUNCHDECK_BUILD_ACK_WAIT_S": str(ACK_WAIT_S)},
        nats_logs=[nats_log],
    ) as p:
        yield p


async def served(api: Api, project: str, text: str) -> bool:
    try:
        status, body = await api.edge_get(project)
    except aiohttp.ClientError:
        return False
    return status == 200 and text in body


async def build_count(api: Api) -> int:
    status, projects = await api.call("GET", "/projects", params={"limit": "100"})
    assert status == 200, projects
    total = 0
    for project in projects["items"]:
        status, builds = await api.call(
            "GET", f"/projects/{project['name']}/builds", params={"limit": "100"}
        )
        assert status == 200, builds
        total += len(builds["items"])
    return total


SLOW_BUILD = """\
import os, time
os.makedirs("dist", exist_ok=True)
for i in range(1, 61):
    print(f"line {{i}}", flush=True)
    time.sleep(0.05)
with open("dist/index.html", "w") as f:
    f.write("<h1>survived a crash</h1>")
"""


async def test_killed_build_worker_build_is_redelivered_and_log_stays_whole(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """A build whose worker is SIGKILLed mid-build finishes as attempt 2 on a new worker; a
    viewer connected throughout gets every line once (seq 1..N), then `end`."""
    repo = make_git_repo({"slow.py": SLOW_BUILD.format()})
    await create_project(
        api, "crashy", repo, build={"build_command": "python3 slow.py", "output_dir": "dist"}
    )
    status, build = await api.call("POST", "/projects/crashy/builds", {})
    assert status == 202, build
    url = api.log_ws_url(build["id"])
    seen: list[dict[str, Any]] = []
    viewer = asyncio.create_task(read_ws(api.session, url, seen))

    async def mid_build() -> bool:
        assert not viewer.done(), viewer
        return any(f["line"] == "line 10" for f in seen)

    await eventually("line 10 of the first attempt", mid_build)
    first_attempt = build_processes(build["id"])  # real pids, sandboxed or not
    assert first_attempt
    await asyncio.to_thread(platform.stop, "build_worker", signal.SIGKILL)
    platform.start("build_worker")

    lines, end = await asyncio.wait_for(viewer, 60)
    assert end["status"] == "succeeded", end
    seqs = [f["seq"] for f in lines]
    assert seqs == list(range(1, len(lines) + 1))
    text = [f["line"] for f in lines]
    marker = text.index("▶ Attempt 2 (previous attempt was interrupted)")
    first = [t for t in text[:marker] if t.startswith("line ")]
    second = [t for t in text[marker:] if t.startswith("line ")]
    assert first == [f"line {i}" for i in range(1, len(first) + 1)]
    assert 10 <= len(first) < 60  # killed mid-build
    assert second == [f"line {i}" for i in range(1, 61)]

    finished = await api.wait_build(build["id"])
    assert (finished["status"], finished["attempt"]) == ("succeeded", 2)
    status, log = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200
    assert log.splitlines() == text
    await api.wait_build_deployment(build["id"])
    assert await served(api, "crashy", "<h1>survived a crash</h1>")
    # The first attempt's build command did not outlive its worker for long, nor the second's
    # its build.
    await eventually("the build commands gone", lambda: _none_alive(first_attempt), timeout_s=10)
    await eventually("no process of the build left", lambda: not build_processes(build["id"]))


async def test_cli_following_a_deploy_rides_out_a_control_api_crash(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """`launchdeck deploy` is following the build log when the control-api is SIGKILLed and
    restarted: the CLI reconnects where it left off, prints every line once, and still reports
    the deployment live; the build itself never noticed."""
    repo = make_git_repo({"slow.py": SLOW_BUILD.format()})
    await create_project(
        api, "follower", repo, build={"build_command": "python3 slow.py", "output_dir": "dist"}
    )
    cli = asyncio.create_task(launchdeck(platform, "deploy", "follower"))

    async def mid_build() -> bool:
        assert not cli.done(), cli
        _, builds = await api.call("GET", "/projects/follower/builds")
        if not builds["items"]:
            return False
        _, log = await api.call("GET", f"/builds/{builds['items'][0]['id']}/logs")
        return "line 10" in str(log).splitlines()

    await eventually("line 10 of the build", mid_build)
    await asyncio.to_thread(platform.stop, "control_api", signal.SIGKILL)
    platform.start("control_api")

    result = await cli
    assert result.code == 0, result
    assert [t for t in result.out if t.startswith("line ")] == [f"line {i}" for i in range(1, 61)]
    assert not any(t.startswith("▶ Attempt 2") for t in result.out)
    assert result.out[-1] == f"Live at http://follower.localhost:{platform.edge_port}/"
    assert await served(api, "follower", "<h1>survived a crash</h1>")


async def _none_alive(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)


async def engine_project_health(platform: Platform, project: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{platform.engine_url}/api/health/{project}") as resp,
    ):
        return resp.status, json.loads(await resp.text())


async def test_sites_stay_served_while_the_deploy_engine_restarts(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """Caddy keeps serving while the deploy-engine is stopped; the restarted engine reuses it
    and reports the project healthy."""
    repo = make_git_repo(site("Steady edge"))
    await create_project(api, "steady", repo)
    await deploy(api, "steady")
    caddy_pid = read_pid(CaddyPaths.of(platform.state_dir))
    assert caddy_pid is not None
    assert alive(caddy_pid)

    engine = platform.processes["deploy_engine"]
    await asyncio.to_thread(platform.stop, "deploy_engine", signal.SIGTERM)
    assert engine.returncode == 0, platform.logs("deploy_engine")[-3000:]
    assert await served(api, "steady", "<h1>Steady edge</h1>")

    platform.start("deploy_engine")
    await wait_http_ok(f"{platform.engine_url}/health", 60, platform)
    assert await served(api, "steady", "<h1>Steady edge</h1>")
    status, health = await engine_project_health(platform, "steady")
    assert status == 200, health
    assert health["healthy"] is True
    assert read_pid(CaddyPaths.of(platform.state_dir)) == caddy_pid  # the same Caddy


async def test_killed_engine_and_caddy_come_back_with_every_site_without_rebuilding(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """After SIGKILL of the deploy-engine and the loss of its Caddy, a new engine serves every
    active site again from the stored releases; no build is started."""
    for name in ("phoenix", "ember"):
        await create_project(api, name, make_git_repo(site(f"Rising {name}")))
        await deploy(api, name)
    status, projects = await api.call("GET", "/projects", params={"limit": "100"})
    assert status == 200
    live: dict[str, str] = {}
    for project in projects["items"]:
        status, deployments = await api.call("GET", f"/projects/{project['name']}/deployments")
        assert status == 200
        if any(d["status"] == "active" for d in deployments["items"]):
            status, body = await api.edge_get(project["name"])
            assert status == 200, (project["name"], body)
            live[project["name"]] = body
    assert {"phoenix", "ember"} <= set(live)
    builds_before = await build_count(api)
    old_caddy = read_pid(CaddyPaths.of(platform.state_dir))

    await asyncio.to_thread(platform.stop, "deploy_engine", signal.SIGKILL)
    assert stop_caddy(platform.state_dir) is True
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.edge_get("phoenix")

    platform.start("deploy_engine")
    await wait_http_ok(f"{platform.engine_url}/health", 60, platform)
    for name, body in live.items():
        assert await eventually(f"{name} served", lambda n=name, b=body: served(api, n, b), 15)
    assert read_pid(CaddyPaths.of(platform.state_dir)) not in (None, old_caddy)
    assert await build_count(api) == builds_before


async def test_deleted_project_stops_being_served_even_after_an_engine_restart(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """DELETE of a project takes its site off the edge and its releases off the disk; a
    restarted deploy-engine does not bring it back; the name can then be used again."""
    await create_project(api, "gone", make_git_repo(site("Soon gone")))
    await deploy(api, "gone")
    assert await served(api, "gone", "<h1>Soon gone</h1>")

    status, _ = await api.call("DELETE", "/projects/gone")
    assert status == 204

    async def off_the_edge() -> bool:
        return (await api.edge_get("gone"))[0] == 404

    await eventually("the site off the edge", off_the_edge)
    await eventually(
        "its releases removed", lambda: not (platform.state_dir / "releases" / "gone").exists()
    )
    await asyncio.to_thread(platform.stop, "deploy_engine", signal.SIGTERM)
    platform.start("deploy_engine")
    await wait_http_ok(f"{platform.engine_url}/health", 60, platform)
    assert (await api.edge_get("gone"))[0] == 404

    await create_project(api, "gone", make_git_repo(site("Back again")))
    await deploy(api, "gone")
    assert await served(api, "gone", "<h1>Back again</h1>")
