"""Dockerfile apps end to end, through the whole platform as users run it: a git repository with
a `Dockerfile` → the build-worker builds its image (the engine's output in the build log) → the
release carries the image → the deploy-engine runs it as a container with `PORT`, the project's
env vars and its memory limit → served through the edge; redeployed under load without a failed
request; rolled back; over its memory limit it is OOM-killed and said so; a Dockerfile that fails
fails the build with the engine's error. Needs podman (`make test-containers`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.support import Api, Platform, create_project, launch_platform
from tests.polling import eventually
from tests.support import GitRepoFactory, commit_files, git

pytestmark = pytest.mark.containers

BUILD_TIMEOUT_S = 400
FAST_APPS = {
    "LAUNCHDECK_HEALTH_CHECK_INTERVAL_S": "0.2",
    "LAUNCHDECK_APP_STOP_GRACE_S": "5",
    "LAUNCHDECK_APP_RESTART_BACKOFF_S": "0.1",
    "LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S": "0.5",
}
SERVER = """\
import asyncio, json, os, signal
from aiohttp import web

held = []

async def index(request):
    return web.Response(text=open("version.txt").read().strip())

async def env(request):
    return web.json_response(dict(os.environ))

async def alloc(request):
    held.append(bytearray(int(request.query["mb"]) * 1024 * 1024))
    return web.Response(text="allocated")

app = web.Application()
app.add_routes([web.get("/", index), web.get("/env", env), web.get("/alloc", alloc),
                web.get("/health", lambda r: web.Response(text="ok"))])
print("listening on", os.environ["PORT"], "token=" + os.environ.get("SECRET_TOKEN", ""),
      flush=True)
web.run_app(app, port=int(os.environ["PORT"]), print=None)
"""
DOCKERFILE = """\
FROM {base}
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -q 'aiohttp>=3.10,<4'
WORKDIR /app
COPY server.py version.txt ./
EXPOSE 8080
CMD ["/venv/bin/python", "server.py"]
"""


def app_repo(base: str, version: str) -> dict[str, str | bytes]:
    return {
        "Dockerfile": DOCKERFILE.format(base=base),
        "server.py": SERVER,
        "version.txt": version,
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


@pytest_asyncio.fixture(loop_scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, platform)


def containers_of(engine: str, project: str) -> list[str]:
    result = subprocess.run(
        [engine, "ps", "-a", "--filter", f"label=launchdeck.project={project}", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


async def build_log(api: Api, build_id: str) -> str:
    status, text = await api.call("GET", f"/builds/{build_id}/logs")
    assert status == 200, text
    return str(text)


async def app_log(api: Api, project: str) -> str:
    status, text = await api.call("GET", f"/projects/{project}/logs?limit=1000")
    assert status == 200, text
    return str(text)


async def _log_has(api: Api, project: str, needle: str) -> str | None:
    text = await app_log(api, project)
    return text if needle in text else None


async def deploy(api: Api, project: str, **body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build and deploy, with room for an image build (the first pip install, the save)."""
    status, build = await api.call("POST", f"/projects/{project}/builds", body)
    assert status == 202, build
    finished = await api.wait_build(build["id"], timeout_s=BUILD_TIMEOUT_S)
    assert finished["status"] == "succeeded", (finished, await build_log(api, build["id"]))
    return finished, await api.wait_build_deployment(build["id"], timeout_s=120)


async def hammer(api: Api, project: str, stop: asyncio.Event, answers: Counter[str]) -> None:
    """GET the site through the edge until `stop`, counting each answer (or failure)."""
    url = f"http://127.0.0.1:{api.platform.edge_port}/"
    headers = {"Host": f"{project}.localhost"}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(url, headers=headers) as resp:
                    body = await resp.text()
                    key = f"{resp.status} {body}" if resp.status == 200 else str(resp.status)
                    answers[key] += 1
            except aiohttp.ClientError as exc:
                answers[f"error {type(exc).__name__}"] += 1


async def test_a_dockerfile_app_runs_redeploys_under_load_and_rolls_back(
    api: Api, make_git_repo: GitRepoFactory, base_image: str, container_engine: str
) -> None:
    repo = make_git_repo(app_repo(base_image, "container v1"))
    await create_project(api, "boxapp", repo, resources={"memory_mb": 96, "cpus": 0.5})
    status, answer = await api.call(
        "PUT", "/projects/boxapp/env/SECRET_TOKEN", {"value": "box-secret-value"}
    )
    assert status == 200, answer
    first, deployment = await deploy(api, "boxapp")
    assert first["artifact"]["kind"] == "container", first
    log = await build_log(api, first["id"])
    assert "STEP" in log or "Step" in log, log  # the engine's own build output, streamed
    assert "box-secret-value" not in log
    assert deployment["url"].startswith("http://boxapp.localhost")
    assert await api.edge_get("boxapp") == (200, "container v1")
    env = json.loads((await api.edge_get("boxapp", "/env"))[1])
    assert env["SECRET_TOKEN"] == "box-secret-value"
    assert env["LAUNCHDECK_DEPLOYMENT_ID"] == deployment["id"]
    assert env["PORT"]
    text = await eventually("the app's start line", lambda: _log_has(api, "boxapp", "listening"))
    assert "token=***" in text
    assert "box-secret-value" not in text
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{api.platform.engine_url}/api/health/boxapp") as resp,
    ):
        health = await resp.json()
        assert (resp.status, health["healthy"], health["kind"]) == (200, True, "container")
    assert len(containers_of(container_engine, "boxapp")) == 1

    # v2 under a steady stream of requests: every one answered, by v1 then by v2.
    commit_files(repo, {"version.txt": "container v2"}, "v2")
    stop = asyncio.Event()
    answers: Counter[str] = Counter()
    load = asyncio.create_task(hammer(api, "boxapp", stop, answers))
    try:
        second, _ = await deploy(api, "boxapp")
        await eventually(
            "v2 answering under load", lambda: answers["200 container v2"] >= 20 or None
        )
    finally:
        stop.set()
        await load
    assert set(answers) == {"200 container v1", "200 container v2"}, answers
    assert second["id"] != first["id"]
    # The old container is gone once drained: one container again.
    await eventually(
        "the old container removed",
        lambda: len(containers_of(container_engine, "boxapp")) == 1 or None,
    )

    status, rollback = await api.call("POST", "/projects/boxapp/rollback")
    assert status == 202, rollback
    await api.wait_deployment(rollback["id"])
    assert rollback["build_id"] == first["id"]
    assert await api.edge_get("boxapp") == (200, "container v1")

    # A branch builds a preview: its own container at its own host, production untouched.
    git(repo, "checkout", "-q", "-b", "feature")
    commit_files(repo, {"version.txt": "container preview"}, "on a branch")
    preview, preview_deployment = await deploy(api, "boxapp", ref="feature")
    assert preview["environment"] == "preview"
    host = urlsplit(preview_deployment["url"]).hostname
    assert await api.edge_get("boxapp", host=host) == (200, "container preview")
    assert await api.edge_get("boxapp") == (200, "container v1")
    assert len(containers_of(container_engine, "boxapp")) == 2

    # Past its 96 MiB the container is OOM-killed; the log says so, supervision restarts it.
    # The edge answers 502 for the request whose upstream died (or the connection drops).
    with contextlib.suppress(aiohttp.ClientError):
        status, _ = await api.edge_get("boxapp", "/alloc?mb=300")
        assert status == 502, status
    await eventually("the OOM kill in the app log", lambda: _log_has(api, "boxapp", "memory"))
    assert await eventually("the app serving again", lambda: _serves(api, "boxapp", "container v1"))

    status, answer = await api.call("DELETE", "/projects/boxapp")
    assert status in (200, 202, 204), answer
    await eventually(
        "no container left", lambda: not containers_of(container_engine, "boxapp") or None
    )


async def _serves(api: Api, project: str, text: str) -> bool | None:
    try:
        return await api.edge_get(project) == (200, text) or None
    except aiohttp.ClientError:
        return None


async def test_a_dockerfile_that_fails_fails_the_build_with_the_engines_error(
    api: Api, make_git_repo: GitRepoFactory, base_image: str
) -> None:
    repo = make_git_repo(
        {
            "Dockerfile": f"FROM {base_image}\nRUN echo about to fail && exit 7\n",
            "version.txt": "never",
        }
    )
    await create_project(api, "badbox", repo)
    status, build = await api.call("POST", "/projects/badbox/builds", {})
    assert status == 202, build
    finished = await api.wait_build(build["id"], timeout_s=BUILD_TIMEOUT_S)
    assert finished["status"] == "failed", finished
    assert "Dockerfile" in finished["error"], finished
    log = await build_log(api, build["id"])
    assert "about to fail" in log
    assert "exit status 7" in log or "exit code: 7" in log or "exit code 7" in log, log
