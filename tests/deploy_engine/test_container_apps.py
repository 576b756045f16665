"""Container apps (a release of kind "container"): the deploy-engine loads the release's image,
runs it with podman under the same activation, supervision and recovery as process apps, with a
project's memory and CPU limits, and leaves no container behind."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import AppResources, Artifact, DeployRequested
from launchdeck.deploy_engine.apps.activation import AppActivation
from launchdeck.deploy_engine.apps.app_logs import AppLogs
from launchdeck.deploy_engine.apps.container import INSTANCE_LABEL, PROJECT_LABEL
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.deploy_engine.apps.report import apps_report
from launchdeck.deploy_engine.apps.shutdown import stop_apps
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.settings import AppSettings
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.sandbox import Sandbox
from tests.containers.releases import (
    AIOHTTP_SERVER,
    aiohttp_dockerfile,
    build_image,
    container_release,
)
from tests.deploy_engine.app_support import (
    FAST,
    EnvResponder,
    Load,
    read_app_logs,
    where,
)
from tests.deploy_engine.support import Edge, Engine
from tests.polling import eventually

pytestmark = pytest.mark.containers

SECRET = "s3cr3t-" + uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Releases:
    engine: str
    v1: bytes
    v2: bytes
    ids: tuple[str, str]


@pytest.fixture(scope="session")
def releases(
    container_engine: str, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Releases:
    """Two releases of the aiohttp server (markers v1, v2), built once per session; their
    images are then removed from the engine's storage, so that deploying loads them."""
    work = tmp_path_factory.mktemp("container-releases")
    files = {"Dockerfile": aiohttp_dockerfile(base_image), "server.py": AIOHTTP_SERVER}
    ids = tuple(
        build_image(container_engine, work / marker, files, {"MARKER": marker})
        for marker in ("v1", "v2")
    )
    data = [container_release(container_engine, image, work) for image in ids]
    subprocess.run([container_engine, "rmi", *ids], capture_output=True, check=False)
    return Releases(container_engine, data[0], data[1], (ids[0], ids[1]))


@dataclass
class ContainerApps:
    engine: Engine
    fleet: Fleet
    env: EnvResponder
    store: InstanceStore
    container_engine: str

    @property
    def project(self) -> str:
        return self.engine.project

    async def deploy(
        self, build_id: str, data: bytes | None = None, memory_mb: int | None = None
    ) -> tuple[Outcome, str, str | None]:
        """(outcome, final status, error) of one DeployRequested of a container release."""
        if data is not None:
            artifact = await self.engine.put_artifact(build_id, data)
        else:
            artifact = Artifact(key=f"{build_id}.tar.gz", sha256="0" * 64, size=0)
        cmd = DeployRequested(
            deployment_id=str(uuid.uuid4()),
            project_id=self.engine.project_id,
            project_name=self.project,
            build_id=build_id,
            environment="production",
            artifact=msgspec.structs.replace(artifact, kind="container"),
            resources=AppResources(memory_mb=memory_mb, cpus=0.5),
        )
        delivery = Delivery(
            num_delivered=1, max_deliver=3, subject=s.SUBJECT_DEPLOY_JOBS, stream_seq=1
        )
        outcome = await self.engine.handler.handle_deploy(cmd, delivery)
        events = await self.engine.events(cmd.deployment_id)
        return outcome, events[-1].status, events[-1].error

    async def get(self, path: str = "/") -> tuple[int, str]:
        status, _, body = await self.engine.edge.get(f"{self.project}.localhost", path)
        return status, body

    def containers(self) -> list[str]:
        out = subprocess.run(
            [
                self.container_engine,
                "ps",
                "-a",
                "--filter",
                f"label={PROJECT_LABEL}={self.project}",
                "--format",
                "{{.Names}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()


def make_fleet(
    edge: Edge,
    js: JetStreamContext,
    nc: Client,
    store: InstanceStore,
    logs: AppLogs,
    session: aiohttp.ClientSession,
    settings: AppSettings,
    private: Path,
) -> Fleet:
    return Fleet(
        js=js,
        store=store,
        releases=edge.store,
        sites=edge.sites,
        admin=edge.admin,
        settings=settings,
        logs=logs,
        env_source=nats_env_source(nc, wait_s=settings.env_wait_s),
        session=session,
        sandbox=Sandbox("none", None, "containers need none"),
        private=(edge.state_dir, private),
        site_url=lambda host: f"http://{host}:{edge.port}/",
    )


@pytest_asyncio.fixture(loop_scope="session")
async def apps(
    edge: Edge, js: JetStreamContext, nc: Client, tmp_path: Path, container_engine: str
) -> AsyncIterator[ContainerApps]:
    settings = dataclasses.replace(FAST, container_engine=container_engine)
    responder = EnvResponder()
    store = InstanceStore(tmp_path / "apps")
    logs = AppLogs(js, store.seq_dir)
    logs.start()
    async with aiohttp.ClientSession() as session, responder.serving(nc):
        fleet = make_fleet(edge, js, nc, store, logs, session, settings, tmp_path)
        probe = EdgeProbe(session, "127.0.0.1", edge.port)
        handler = DeployHandler(
            js,
            edge.store,
            edge.sites,
            probe,
            site_url=lambda host: f"http://{host}:{edge.port}/",
            keep_releases=3,
            apps=AppActivation(fleet, edge.sites, edge.store, probe),
        )
        engine = Engine(handler, js, edge, str(uuid.uuid4()), f"box-{uuid.uuid4().hex[:8]}")
        apps = ContainerApps(engine, fleet, responder, store, container_engine)
        try:
            yield apps
        finally:
            await apps.fleet.close()
            await logs.close()
            stop_apps(tmp_path, grace_s=1.0)
    assert apps.containers() == [], "stop_apps left a container"


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_deploy_redeploy_under_load_rollback_and_undeploy(
    apps: ContainerApps, releases: Releases, capfd: pytest.CaptureFixture[str]
) -> None:
    """Deploy v1 (its image loaded from the release): the edge serves it, its env var is in the
    container and nowhere in argv or the engine's logs; v2 under load with no failed request;
    rollback to v1 from disk; the limits are reported; undeploying leaves no container, and
    removes the images no release uses any more."""
    apps.env.set(apps.engine.project_id, "production", SECRET_TOKEN=SECRET)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    started = time.monotonic()
    outcome, status, error = await apps.deploy(first, releases.v1)
    container_activation_s = time.monotonic() - started
    assert (outcome, status) == (Outcome.ACK, "active"), error
    assert await apps.get("/") == (200, "v1")
    assert await apps.get("/env/SECRET_TOKEN") == (200, SECRET)
    web = apps.fleet.web_of(apps.project, "production")
    assert web is not None
    assert web.process is not None
    argv = cmdline(web.process.leader)
    assert " run " in argv
    assert f"127.0.0.1:{web.record.port}:{web.record.port}" in argv
    assert "--memory 512m" in argv
    assert "--cpus 0.5" in argv
    assert SECRET not in argv
    assert not (apps.store.dir(web.record.id) / "container.env").exists()  # read, then removed
    report = apps.fleet.report(apps.project)[0]
    assert (report["memory_mb"], report["cpus"], report["image"]) == (512, 0.5, releases.ids[0])
    # What the control-api's apps page shows (`ld.rpc.apps.report`): the same limits, the
    # image's size (its archive in the release) and the container's state.
    [facts] = (await apps_report(apps.fleet, apps.engine.project_id)).instances
    assert (facts.container, facts.image_id) == (web.record.container, releases.ids[0])
    assert (facts.memory_mb, facts.cpus, facts.container_status) == (512, 0.5, "running")
    assert facts.image_size is not None
    assert facts.image_size > 1_000_000
    assert (facts.healthy, facts.restarts) == (True, 0)
    assert apps.containers() == [web.record.container]

    old = web
    load = Load(apps.engine.edge.port, f"{apps.project}.localhost")
    async with load.running(loops=3, slow_loops=1):
        await eventually("load before the redeploy", lambda: len(load.answers) > 30)
        started = time.monotonic()
        outcome, status, error = await apps.deploy(second, releases.v2)
        activated = time.monotonic()
        assert (outcome, status) == (Outcome.ACK, "active"), error
        await eventually(
            "answers for 1 s after activation",
            lambda: load.answers and load.answers[-1][0] > activated + 1.0,
        )
    assert load.failures == [], load.failures[:5]
    assert all(code == 200 for _s, _e, code, _b in load.answers)
    assert where(load.answers, lambda _t: True) == {"v1", "v2"}
    assert where(load.answers, lambda t: t > activated + 0.5) == {"v2"}
    await eventually("the old container removed", lambda: len(apps.containers()) == 1)
    assert old.record.container not in apps.containers()

    outcome, status, error = await apps.deploy(first)  # rollback: the release on disk
    assert (outcome, status) == (Outcome.ACK, "active"), error
    assert await apps.get("/") == (200, "v1")
    await eventually("one container left", lambda: len(apps.containers()) == 1)

    assert await apps.engine.undeploy() is Outcome.ACK
    assert apps.containers() == []
    assert apps.fleet.instances == {}
    for image in releases.ids:  # no release on disk runs them any more
        exists = await asyncio.to_thread(
            subprocess.run, [releases.engine, "image", "exists", image], check=False
        )
        assert exists.returncode == 1, image
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    print(f"container activation: {container_activation_s:.2f}s (first deploy, image load)")


async def test_memory_limit_kills_the_app_and_supervision_restarts_it(
    apps: ContainerApps, releases: Releases
) -> None:
    """A 64 MiB project limit: allocating past it gets the container OOM-killed; the app log
    says so and the container is started again (and serves)."""
    outcome, status, error = await apps.deploy(str(uuid.uuid4()), releases.v1, memory_mb=64)
    assert (outcome, status) == (Outcome.ACK, "active"), error
    web = apps.fleet.web_of(apps.project, "production")
    assert web is not None
    assert web.process is not None
    assert "--memory 64m --memory-swap 64m" in cmdline(web.process.leader)
    async with read_app_logs(apps.engine.js, apps.engine.project_id) as logs:
        status_code, _ = await apps.get("/alloc/200")
        assert status_code >= 500
        await eventually("the crash in the app log", lambda: "out of memory" in logs.text())
        line = next(x for x in logs.lines() if "out of memory" in x)
        assert "The web process was killed" in line
        assert "(limit 64 MiB" in line
        await eventually("restarted", lambda: web.restarts == 1 and web.running)
    await eventually("serving again", lambda: _serves(apps))
    assert "out of memory" in (web.last_exit or "")
    assert len(apps.containers()) == 1


async def _serves(apps: ContainerApps) -> bool:
    return await apps.get("/") == (200, "v1")


async def test_restarted_engine_adopts_the_container_and_removes_strays(
    apps: ContainerApps,
    releases: Releases,
    edge: Edge,
    js: JetStreamContext,
    nc: Client,
    tmp_path: Path,
) -> None:
    """The engine stops (its apps keep running) and a new one recovers: the same `run` process
    and container are adopted, never restarted; a container labelled as an unknown instance of
    this apps directory is removed."""
    outcome, status, error = await apps.deploy(str(uuid.uuid4()), releases.v1)
    assert (outcome, status) == (Outcome.ACK, "active"), error
    web = apps.fleet.web_of(apps.project, "production")
    assert web is not None
    assert web.process is not None
    pid = web.process.leader
    stray = f"launchdeck-stray-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(
        subprocess.run,
        [
            releases.engine,
            "run",
            "-d",
            "--name",
            stray,
            "--label",
            f"{PROJECT_LABEL}={apps.project}",
            "--label",
            f"{INSTANCE_LABEL}={apps.store.marker('0123456789ab')}",
            releases.ids[0],
            "sleep",
            "600",
        ],
        capture_output=True,
        check=True,
    )
    await apps.fleet.close()
    assert await apps.get("/") == (200, "v1")  # served without an engine

    logs = AppLogs(js, apps.store.seq_dir)
    logs.start()
    async with aiohttp.ClientSession() as session:
        fleet = make_fleet(edge, js, nc, apps.store, logs, session, apps.fleet.settings, tmp_path)
        try:
            counts = await fleet.recover()
            assert counts["adopted"] == 1
            assert counts["restarting"] == 0
            assert counts["killed"] == 1
            adopted = fleet.web_of(apps.project, "production")
            assert adopted is not None
            assert adopted.process is not None
            assert adopted.process.leader == pid
            assert adopted.running
            assert apps.containers() == [web.record.container]
            assert await apps.get("/") == (200, "v1")
            apps.fleet = fleet  # the fixture stops this one's apps
        finally:
            await fleet.close()
            await logs.close()


async def test_no_container_engine_fails_the_deployment_saying_what_to_install(
    apps: ContainerApps, releases: Releases
) -> None:
    apps.fleet.containers = None
    apps.fleet.settings = dataclasses.replace(
        apps.fleet.settings, container_engine=None, container_engine_setting="none"
    )
    outcome, status, error = await apps.deploy(str(uuid.uuid4()), releases.v1)
    assert (outcome, status) == (Outcome.ACK, "failed")
    assert "runs as a container" in (error or "")
    assert "install podman" in (error or "")
    assert (await apps.get("/"))[0] == 404
