"""Apps end to end, through the whole platform as users run it (every service its own NATS user):
a git repository → the build-worker's process release → the deploy-engine runs it with the
project's env vars → served through the edge, its output in the app log API; a Procfile app's
release command and worker; rollback; a deleted project's processes stop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, marked_pids
from tests.deploy_engine.sample_apps import NODE_SERVER, WORKER
from tests.e2e.support import Api, Platform, create_project, deploy, launch_platform
from tests.polling import eventually
from tests.support import GitRepoFactory, commit_files

# Short timings: a failing health check or a drain takes moments, not the default seconds.
FAST_APPS = {
    "LAUNCHDECK_HEALTH_CHECK_INTERVAL_S": "0.2",
    "LAUNCHDECK_APP_STOP_GRACE_S": "3",
    "LAUNCHDECK_APP_RESTART_BACKOFF_S": "0.1",
    "LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S": "0.5",
    "LAUNCHDECK_APP_CRASH_LIMIT": "3",
}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, nats_url: str, nats_log: Path
) -> AsyncIterator[Platform]:
    async with launch_platform(
        tmp_path_factory.mktemp("platform"),
        database_url,
        nats_url,
        FAST_APPS,
        nats_logs=[nats_log],
    ) as p:
        yield p


def node_repo(version: str, **extra: str) -> dict[str, str | bytes]:
    package = {"name": "e2e-app", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    return {
        "package.json": json.dumps(package),
        "server.js": NODE_SERVER,
        "version.txt": version,
        **extra,
    }


def app_processes(platform: Platform) -> dict[int, str]:
    root = str(platform.state_dir / "apps") + "/"
    return marked_pids(lambda marker: marker.startswith(root), APP_MARKER_VAR)


async def app_log(api: Api, project: str) -> str:
    status, text = await api.call("GET", f"/projects/{project}/logs?limit=1000")
    assert status == 200, text
    return str(text)


async def set_env(api: Api, project: str, key: str, value: str, *targets: str) -> None:
    body: dict[str, Any] = {"value": value}
    if targets:
        body["targets"] = list(targets)
    status, answer = await api.call("PUT", f"/projects/{project}/env/{key}", body)
    assert status == 200, answer


async def test_a_node_app_is_built_run_and_served(api: Api, make_git_repo: GitRepoFactory) -> None:
    """`npm start` of a repository becomes a running app: its production env var reaches it (and
    is masked in its log), it gets PORT, it answers through the edge, and the engine reports it
    healthy. A changed env var reaches it by a redeploy. Rolling back starts the previous
    release's process again."""
    repo = make_git_repo(node_repo("node v1"))
    await create_project(api, "nodeapp", repo)
    await set_env(api, "nodeapp", "SECRET_TOKEN", "e2e-secret-value", "production")
    first, deployment = await deploy(api, "nodeapp")
    assert deployment["url"].startswith("http://nodeapp.localhost")
    assert await api.edge_get("nodeapp") == (200, "node v1")
    env = json.loads((await api.edge_get("nodeapp", "/env"))[1])
    assert env["SECRET_TOKEN"] == "e2e-secret-value"
    assert env["LAUNCHDECK_DEPLOYMENT_ID"] == deployment["id"]
    assert env["LAUNCHDECK_COMMIT_SHA"] == first["commit_sha"]
    assert env["PORT"]

    log: str = await eventually(
        "the app's start line in its log",
        lambda: _contains(api, "nodeapp", "listening on"),
    )
    assert "token=***" in log
    assert "e2e-secret-value" not in log
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{api.platform.engine_url}/api/health/nodeapp") as resp,
    ):
        health = await resp.json()
        assert (resp.status, health["healthy"], health["kind"]) == (200, True, "process")

    # A changed env var restarts nothing by itself; a redeploy (no rebuild) brings it in.
    await set_env(api, "nodeapp", "SECRET_TOKEN", "e2e-secret-changed", "production")
    env = json.loads((await api.edge_get("nodeapp", "/env"))[1])
    assert env["SECRET_TOKEN"] == "e2e-secret-value"
    status, redeployed = await api.call("POST", "/projects/nodeapp/redeploy")
    assert status == 202, redeployed
    assert redeployed["build_id"] == first["id"]
    await api.wait_deployment(redeployed["id"])
    env = json.loads((await api.edge_get("nodeapp", "/env"))[1])
    assert env["SECRET_TOKEN"] == "e2e-secret-changed"
    assert env["LAUNCHDECK_DEPLOYMENT_ID"] == redeployed["id"]

    commit_files(repo, {"version.txt": "node v2"}, "v2")
    await deploy(api, "nodeapp")
    assert await api.edge_get("nodeapp") == (200, "node v2")
    status, rollback = await api.call("POST", "/projects/nodeapp/rollback")
    assert status == 202, rollback
    await api.wait_deployment(rollback["id"])
    assert await api.edge_get("nodeapp") == (200, "node v1")
    assert rollback["build_id"] == first["id"]


async def test_procfile_app_with_worker_and_release_command(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    """A Procfile with web, worker and release: all three run (the release command first, once);
    a release command that fails fails the next deployment, quoting it, and the old release
    keeps serving."""
    procfile = "web: node server.js\nworker: python3 worker.py\nrelease: sh migrate.sh\n"
    files = {
        **node_repo("proc v1"),
        "Procfile": procfile,
        "worker.py": WORKER,
        "migrate.sh": "echo migrated v1\n",
    }
    repo = make_git_repo(files)
    await create_project(api, "procapp", repo)
    await deploy(api, "procapp")
    assert await api.edge_get("procapp") == (200, "proc v1")
    log: str = await eventually(
        "the worker's and the release command's lines",
        lambda: _contains(api, "procapp", "worker heartbeat", "migrated v1"),
    )
    assert "worker up (proc v1" in log

    commit_files(repo, {"version.txt": "proc v2", "migrate.sh": "echo no db; exit 2\n"}, "bad")
    status, build = await api.call("POST", "/projects/procapp/builds", {})
    assert status == 202, build
    assert (await api.wait_build(build["id"]))["status"] == "succeeded"
    _, build = await api.call("GET", f"/builds/{build['id']}")
    failed = await api.wait_deployment(build["deployment_id"], status="failed")
    assert "the release command `sh migrate.sh` exited with code 2" in failed["error"]
    assert "no db" in failed["error"]
    assert await api.edge_get("procapp") == (200, "proc v1")


async def test_a_crash_loop_shows_as_unhealthy_in_the_api_then_active_again(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """The deploy-engine's `unhealthy` event (3 crashes in the window here) reaches the API: the
    deployment is `unhealthy` with the reason, still the live one; once the app starts again it
    is `active` again."""
    project = await create_project(api, "crashy", make_git_repo(node_repo("crashy v1")))
    _, deployment = await deploy(api, "crashy")
    (instance,) = _instance_dirs(platform, project["id"])
    crash_file = Path(instance) / "home" / "crash"
    crash_file.write_text("every start fails from now on")
    assert await api.edge_get("crashy", "/crash") == (200, "bye")
    unhealthy = await api.wait_deployment(deployment["id"], status="unhealthy", timeout_s=30)
    assert "the web process crashed 3 times" in unhealthy["error"]
    assert "boom: crashy v1 cannot start" in unhealthy["error"]
    crash_file.unlink()
    await api.wait_deployment(deployment["id"], status="active", timeout_s=30)
    assert await api.edge_get("crashy") == (200, "crashy v1")


async def test_a_deleted_projects_processes_stop(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    """Deleting a project stops its app's processes (every one carrying its instances' marker)
    and its site; other projects' apps keep running."""
    repo = make_git_repo(node_repo("doomed"))
    project = await create_project(api, "doomed", repo)
    await deploy(api, "doomed")
    doomed = _instance_dirs(platform, project["id"])
    assert doomed
    assert doomed <= set(app_processes(platform).values())
    others = set(app_processes(platform).values()) - doomed
    status, _ = await api.call("DELETE", "/projects/doomed")
    assert status in (202, 204)
    await eventually(
        "the deleted project's processes gone",
        lambda: not doomed & set(app_processes(platform).values()),
        timeout_s=30,
    )
    assert (await api.edge_get("doomed"))[0] == 404
    assert others <= set(app_processes(platform).values())


def _instance_dirs(platform: Platform, project_id: str) -> set[str]:
    """The marker (instance directory) of every instance of a project, by its records."""
    found = set()
    for record in (platform.state_dir / "apps").glob("*/instance.json"):
        if json.loads(record.read_text())["project_id"] == project_id:
            found.add(str(record.parent))
    return found


async def _contains(api: Api, project: str, *needles: str) -> str | None:
    text = await app_log(api, project)
    return text if all(n in text for n in needles) else None
