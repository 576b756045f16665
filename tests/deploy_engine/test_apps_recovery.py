"""The deploy-engine killed (SIGKILL) and started again: its apps never stop serving, the new
engine adopts them (the same processes, never a second copy), starts again the one that died
meanwhile, and stops what it does not know."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import Artifact, DeployRequested
from launchdeck.deploy_engine.apps.records import InstanceRecord
from launchdeck.deploy_engine.apps.shutdown import stop_apps
from launchdeck.deploy_engine.caddy import stop_caddy
from launchdeck.devservers import free_port
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, marked_pids
from tests.deploy_engine.app_support import EnvResponder, Load, read_app_logs, wait_statuses
from tests.deploy_engine.archives import sha256
from tests.deploy_engine.sample_apps import node_app
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env


@pytest_asyncio.fixture(loop_scope="session")
async def engine(
    tmp_path: Path, nats_url: str, nc: Client
) -> AsyncIterator[tuple[ServiceProcess, EnvResponder]]:
    """The deploy-engine as a process (short app timings), with env vars answered for it."""
    env = service_env(
        "deploy-engine",
        tmp_path,
        NATS_URL=nats_url,
        LAUNCHDECK_EDGE_HTTP_PORT=str(free_port()),
        LAUNCHDECK_DEPLOY_ENGINE_PORT=str(free_port()),
        LAUNCHDECK_HEALTH_CHECK_INTERVAL_S="0.2",
        LAUNCHDECK_APP_STOP_GRACE_S="3",
        LAUNCHDECK_APP_RESTART_BACKOFF_S="0.05",
    )
    process = ServiceProcess("deploy-engine", env, tmp_path / "engine.log")
    responder = EnvResponder()
    async with responder.serving(nc):
        try:
            yield process, responder
        finally:
            process.kill()
            stop_apps(tmp_path, grace_s=1.0)
            stop_caddy(tmp_path)


def records(state_dir: Path) -> list[InstanceRecord]:
    return [
        msgspec.json.decode(path.read_bytes(), type=InstanceRecord)
        for path in sorted((state_dir / "apps").glob("*/instance.json"))
    ]


def app_processes(state_dir: Path) -> dict[int, str]:
    root = str(state_dir / "apps") + "/"
    return marked_pids(lambda marker: marker.startswith(root), APP_MARKER_VAR)


async def test_sigkilled_engine_adopts_its_apps_and_restarts_the_dead_one(
    engine: tuple[ServiceProcess, EnvResponder], js: JetStreamContext
) -> None:
    process, responder = engine
    state_dir = Path(process.env["LAUNCHDECK_STATE_DIR"])
    edge_port = int(process.env["LAUNCHDECK_EDGE_HTTP_PORT"])
    process.start()
    await process.wait_for("deploy_engine_ready")

    project_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    names = [f"rec-{uuid.uuid4().hex[:8]}" for _ in project_ids]
    for project_id in project_ids:
        responder.set(project_id, "production", SECRET_TOKEN="recovered-secret")
    for project_id, name in zip(project_ids, names, strict=True):
        await deploy(js, project_id, name, node_app(f"{name} v1"))
    before = {r.project: r for r in records(state_dir)}
    assert set(before) == set(names)
    pids_before = app_processes(state_dir)

    survivor, victim = names
    load = Load(edge_port, f"{survivor}.localhost")
    async with read_app_logs(js, project_ids[0]) as logs, load.running(loops=2):
        await eventually("load", lambda: len(load.answers) > 20)
        process.kill()  # SIGKILL: no chance to clean anything up
        # Its apps keep serving without it; one of them dies meanwhile.
        count = len(load.answers)
        await eventually("answers with the engine dead", lambda: len(load.answers) > count + 50)
        os.killpg(before[victim].pid or 0, signal.SIGKILL)
        await _edge(edge_port, survivor, "/say/while-the-engine-was-down")

        process.start()
        line = await process.wait_for("apps_recovered", adopted=1)
        await eventually(
            "the victim serving again", lambda: _serves(edge_port, victim, f"{victim} v1")
        )
        await eventually(
            "the line printed while no engine ran, in the app log",
            lambda: "said while-the-engine-was-down" in logs.lines(process="web"),
        )
        count = len(load.answers)
        await eventually("answers after the restart", lambda: len(load.answers) > count + 50)

    assert (line["adopted"], line["restarting"], line["killed"]) == (1, 1, 0)
    assert load.failures == [], load.failures[:5]
    assert {body for *_t, status, body in load.answers if status == 200} == {f"{survivor} v1"}

    after = {r.project: r for r in records(state_dir)}
    assert after[survivor].pid == before[survivor].pid  # adopted: the very same process
    assert after[survivor].id == before[survivor].id
    assert after[victim].pid != before[victim].pid  # started again, same instance and port
    assert after[victim].port == before[victim].port
    # Never two copies: every process carrying an instance's marker is one of the two
    # instances', and the survivor's processes are exactly the ones it had.
    pids_after = app_processes(state_dir)
    assert set(pids_after.values()) == {str(state_dir / "apps" / r.id) for r in after.values()}
    survivor_marker = str(state_dir / "apps" / before[survivor].id)
    assert {p for p, m in pids_after.items() if m == survivor_marker} == {
        p for p, m in pids_before.items() if m == survivor_marker
    }
    # The restarted app got its env vars again (from the control-api, not from disk).
    assert json.loads(await _edge(edge_port, victim, "/env"))["SECRET_TOKEN"] == "recovered-secret"
    assert (
        "recovered-secret"
        not in (state_dir / "apps").joinpath(after[victim].id, "instance.json").read_text()
    )


async def test_processes_nobody_recorded_are_stopped_at_start(
    engine: tuple[ServiceProcess, EnvResponder], tmp_path: Path
) -> None:
    """A process carrying the marker of an instance without a record (the engine was killed
    between starting it and recording it) is killed when the next engine starts."""
    process, _ = engine
    state_dir = Path(process.env["LAUNCHDECK_STATE_DIR"])
    stray_dir = state_dir / "apps" / "0123456789ab"
    stray_dir.mkdir(parents=True)
    stray = await asyncio.create_subprocess_exec(
        "sleep", "600", env={**os.environ, APP_MARKER_VAR: str(stray_dir)}, start_new_session=True
    )
    # Another engine's app on the same machine (another state directory): not this one's.
    foreign = await asyncio.create_subprocess_exec(
        "sleep",
        "600",
        env={**os.environ, APP_MARKER_VAR: str(tmp_path / "elsewhere" / "apps" / "0123456789ab")},
        start_new_session=True,
    )
    try:
        process.start()
        line = await process.wait_for("apps_recovered")
        assert line["killed"] == 1
        assert await asyncio.wait_for(stray.wait(), 5) == -signal.SIGKILL
        assert not stray_dir.exists()
        assert foreign.returncode is None
    finally:
        foreign.kill()
        await foreign.wait()


async def test_a_crash_loop_reported_by_a_killed_engine_ends_active_under_the_next(
    engine: tuple[ServiceProcess, EnvResponder], js: JetStreamContext
) -> None:
    """The engine reports an app `unhealthy` and is killed; the app is fixed meanwhile; the next
    engine starts it and reports the deployment `active` again (it knew of the crash loop from
    the instance's record)."""
    process, _ = engine
    state_dir = Path(process.env["LAUNCHDECK_STATE_DIR"])
    edge_port = int(process.env["LAUNCHDECK_EDGE_HTTP_PORT"])
    process.env["LAUNCHDECK_APP_CRASH_LIMIT"] = "2"
    process.env["LAUNCHDECK_APP_RESTART_BACKOFF_MAX_S"] = "0.5"
    process.start()
    await process.wait_for("deploy_engine_ready")
    project_id, name = str(uuid.uuid4()), f"loop-{uuid.uuid4().hex[:8]}"
    deployment_id = await deploy(js, project_id, name, node_app("loop v1"))
    (record,) = records(state_dir)
    crash_file = state_dir / "apps" / record.id / "home" / "crash"
    crash_file.write_text("crash at every start")
    assert await _edge(edge_port, name, "/crash") == "bye"
    await wait_statuses(js, project_id, deployment_id, ["activating", "active", "unhealthy"])
    assert records(state_dir)[0].unhealthy
    process.kill()
    crash_file.unlink()  # fixed while no engine runs
    process.start()
    await wait_statuses(
        js, project_id, deployment_id, ["activating", "active", "unhealthy", "active"]
    )
    assert await _edge(edge_port, name) == "loop v1"
    assert not records(state_dir)[0].unhealthy


async def test_a_stopped_engine_leaves_its_apps_serving_until_they_are_stopped(
    engine: tuple[ServiceProcess, EnvResponder], js: JetStreamContext
) -> None:
    """SIGTERM: the engine exits (code 0) and its app keeps serving; `python -m
    launchdeck.deploy_engine.apps.shutdown` (what an operator or `launchdeck dev` runs after it)
    stops every app of the state directory."""
    process, _ = engine
    state_dir = Path(process.env["LAUNCHDECK_STATE_DIR"])
    edge_port = int(process.env["LAUNCHDECK_EDGE_HTTP_PORT"])
    process.start()
    await process.wait_for("deploy_engine_ready")
    name = f"stop-{uuid.uuid4().hex[:8]}"
    await deploy(js, str(uuid.uuid4()), name, node_app("still here"))
    assert process.stop(signal.SIGTERM, within_s=10) == 0
    assert await _edge(edge_port, name) == "still here"
    assert app_processes(state_dir)

    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launchdeck.deploy_engine.apps.shutdown",
        env={**process.env, "LAUNCHDECK_APP_STOP_GRACE_S": "5"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await done.communicate()
    assert done.returncode == 0
    assert out.decode().startswith("stopped 1 app process(es)")
    assert app_processes(state_dir) == {}
    assert records(state_dir) == []


async def deploy(js: JetStreamContext, project_id: str, name: str, data: bytes) -> str:
    """Deploy `data` as the project's production release; its deployment id, once active."""
    build_id, deployment_id = str(uuid.uuid4()), str(uuid.uuid4())
    objects = await js.object_store(s.OBJECT_STORE_ARTIFACTS)
    await objects.put(f"{build_id}.tar.gz", data)
    cmd = DeployRequested(
        deployment_id=deployment_id,
        project_id=project_id,
        project_name=name,
        build_id=build_id,
        environment="production",
        artifact=Artifact(
            key=f"{build_id}.tar.gz", sha256=sha256(data), size=len(data), kind="process"
        ),
        requested_at=datetime.now(UTC),
    )
    await js.publish(s.SUBJECT_DEPLOY_JOBS, encode(cmd), headers={"Nats-Msg-Id": deployment_id})
    events = await wait_statuses(js, project_id, deployment_id, ["activating", "active"])
    assert events[-1].status == "active", events[-1].error
    return deployment_id


async def _edge(port: int, project: str, path: str = "/") -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}{path}", headers={"Host": f"{project}.localhost"}
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def _serves(port: int, project: str, body: str) -> bool:
    try:
        return await _edge(port, project) == body
    except AssertionError:
        return False


pytestmark = pytest.mark.timeout(120)
