"""Activation time of a container app against a process app running the *same* aiohttp server
(one server.py, one pinned aiohttp), both deployed through a real deploy-engine — its
DeployHandler and Fleet on a real NATS and a real Caddy, as tests/deploy_engine wires them, with
the engine's production settings (health policy, app sandbox `auto`).

Per kind: the first deploy of each of two releases (v1, v2: for a container, its image is not in
the engine's storage yet, so it is loaded from the release's OCI archive: the load cost), then
`--runs` deploys alternating v2, v1, … (each a real switch: a new process or container, the old
one drained). Figures, from the engine's own log events:
- deploy command → active: `deployment_active`'s `took_ms` (the command taken → the `active`
  event published);
- start → healthy: `app_activated`'s `start_ms` (spawn, image load if any, until the health
  check at `/health` passes); for a first container deploy, the image load's share apart.

Baseline: the process app, same server, same machine, same run; ratio container/process.

    uv run python -m bench.container_activation [--runs 5]

Needs podman and the local base image (deploy/images/make-base.sh, run here). The container's
image is built with podman directly (tests/containers/releases.py), the process release is
packed as the build-worker packs a Python app (dependencies in `.launchdeck/site-packages`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._platform import median, scratch
from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    AppKind,
    Artifact,
    DeployRequested,
    EnvReply,
    EnvRequest,
    UndeployRequested,
)
from launchdeck.deploy_engine.apps.activation import AppActivation
from launchdeck.deploy_engine.apps.app_logs import AppLogs
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.deploy_engine.apps.shutdown import stop_apps
from launchdeck.deploy_engine.caddy import ensure_caddy, listen_address, stop_caddy
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.settings import AppSettings
from launchdeck.deploy_engine.sites import Sites
from launchdeck.devservers import free_port, start_nats, venv_binary
from launchdeck.libs.container_engine import resolve_engine
from launchdeck.libs.jetstream import connect, provision
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.sandbox import detect_sandbox
from tests.containers.releases import build_image, container_release
from tests.deploy_engine.archives import sha256
from tests.deploy_engine.sample_apps import app_release

ROOT = Path(__file__).resolve().parents[1]
AIOHTTP = "aiohttp==3.14.5"  # the same version in the image and in the process release
# The one server both kinds run: `/` answers the release's marker (next to the script), `/health`
# ok; it listens on $PORT (all addresses: in a container the port is published from outside).
SERVER = """\
import os
from pathlib import Path
from aiohttp import web

MARKER = (Path(__file__).parent / "marker.txt").read_text().strip()

async def index(_r): return web.Response(text=MARKER)
async def health(_r): return web.Response(text="ok")

app = web.Application()
app.add_routes([web.get("/", index), web.get("/health", health)])
print(f"listening on {os.environ['PORT']} ({MARKER})", flush=True)
web.run_app(app, host="0.0.0.0", port=int(os.environ["PORT"]), print=None)
"""
DOCKERFILE = """\
FROM {base}
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -q '{aiohttp}'
COPY server.py marker.txt /app/
EXPOSE 8080
CMD ["/venv/bin/python", "-u", "/app/server.py"]
"""


# --- the engine's log events, captured ------------------------------------------------------


@dataclass
class Captured:
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        self.events.append((time.monotonic(), dict(event)))
        raise structlog.DropEvent

    def take(self) -> list[tuple[float, dict[str, Any]]]:
        taken, self.events = self.events, []
        return taken


def capture_engine_log() -> Captured:
    """The deploy-engine's structlog events (info and up) kept here instead of printed."""
    captured = Captured()
    structlog.configure(
        processors=[structlog.processors.add_log_level, captured],
        wrapper_class=structlog.make_filtering_bound_logger(20),
        cache_logger_on_first_use=False,
    )
    return captured


# --- the two kinds of release ----------------------------------------------------------------


def base_image(engine: str) -> str:
    out = subprocess.run(
        [str(ROOT / "deploy/images/make-base.sh")],
        env={**os.environ, "CONTAINER_ENGINE": engine},
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    return out.strip().splitlines()[-1]


def container_releases(engine: str, work: Path) -> tuple[list[bytes], list[str]]:
    """Releases v1 and v2 (their images removed again: a first deploy loads them)."""
    base = base_image(engine)
    ids = [
        build_image(
            engine,
            work / marker,
            {
                "Dockerfile": DOCKERFILE.format(base=base, aiohttp=AIOHTTP),
                "server.py": SERVER,
                "marker.txt": marker,
            },
            {},
        )
        for marker in ("v1", "v2")
    ]
    data = [container_release(engine, image, work) for image in ids]
    subprocess.run([engine, "rmi", *ids], capture_output=True, check=False)
    return data, ids


def process_releases(work: Path) -> list[bytes]:
    """Releases v1 and v2 as the build-worker packs a Python app: its files, its dependencies
    installed into `.launchdeck/site-packages` (on PYTHONPATH by the manifest), compiled to
    bytecode as `pip install --target` leaves them."""
    deps = work / "site-packages"
    # `uv run` names its own binary in UV; the project's venv has neither uv nor pip.
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        sys.exit("container_activation bench: run it with `uv run` (uv installs aiohttp)")
    install = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", "python3"]
    subprocess.run(
        [*install, "--target", str(deps), AIOHTTP],
        check=True,
        capture_output=True,
        timeout=600,
    )
    packed = {
        f".launchdeck/site-packages/{p.relative_to(deps).as_posix()}": p.read_bytes()
        for p in deps.rglob("*")
        if p.is_file()
    }
    return [
        app_release(
            {"server.py": SERVER, "marker.txt": marker, **packed},
            {"web": "python3 -u server.py"},
            health_path="/health",
            paths={"PYTHONPATH": [".launchdeck/site-packages"]},
        )
        for marker in ("v1", "v2")
    ]


# --- a real deploy-engine ----------------------------------------------------------------------


@dataclass
class DeployEngine:
    handler: DeployHandler
    fleet: Fleet
    js: JetStreamContext
    captured: Captured
    edge_port: int

    async def put(self, build_id: str, data: bytes, kind: AppKind) -> Artifact:
        store = await self.js.object_store(s.OBJECT_STORE_ARTIFACTS)
        await store.put(f"{build_id}.tar.gz", data)
        return Artifact(key=f"{build_id}.tar.gz", sha256=sha256(data), size=len(data), kind=kind)

    async def deploy(self, project: str, project_id: str, build_id: str, artifact: Artifact) -> Run:
        """One DeployRequested through the handler; what the engine logged about it."""
        self.captured.take()
        cmd = DeployRequested(
            deployment_id=str(uuid.uuid4()),
            project_id=project_id,
            project_name=project,
            build_id=build_id,
            environment="production",
            artifact=artifact,
        )
        delivery = Delivery(
            num_delivered=1, max_deliver=1, subject=s.SUBJECT_DEPLOY_JOBS, stream_seq=1
        )
        outcome = await self.handler.handle_deploy(cmd, delivery)
        run = Run.of(self.captured.take())
        if outcome is not Outcome.ACK or run.active_ms is None:
            raise RuntimeError(f"deploy of {project} {build_id} did not go active: {run.failure}")
        await self.settled(project)
        return run

    async def settled(self, project: str) -> None:
        """Until the replaced instance is stopped: the next switch does not overlap its drain."""
        deadline = time.monotonic() + 60
        while len(self.fleet.of_project(project)) > 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{project}: the old instance was never stopped")
            await asyncio.sleep(0.05)


@dataclass
class Run:
    active_ms: float | None  # deploy command → active
    start_ms: float | None  # spawn (image load included) → healthy
    load_ms: float | None  # the image load alone (a container whose image was not loaded)
    failure: str = ""

    @classmethod
    def of(cls, events: list[tuple[float, dict[str, Any]]]) -> Run:
        by_name = {e["event"]: (t, e) for t, e in events}
        active = by_name.get("deployment_active")
        activated = by_name.get("app_activated")
        loading, loaded = (
            by_name.get("container_image_loading"),
            by_name.get("container_image_loaded"),
        )
        failed = [e for _t, e in events if e.get("level") in ("warning", "error")]
        return cls(
            active_ms=float(active[1]["took_ms"]) if active else None,
            start_ms=float(activated[1]["start_ms"]) if activated else None,
            load_ms=(loaded[0] - loading[0]) * 1000 if loading and loaded else None,
            failure=str(failed[-1]) if failed else "",
        )


async def answer_env(nc: Client) -> Subscription:
    """The control-api's part of a deploy: no env vars for any project."""

    async def answer(msg: Msg) -> None:
        decode(msg.data, EnvRequest)
        await msg.respond(encode(EnvReply(vars={})))

    return await nc.subscribe(s.SUBJECT_ENV_REQUESTS, cb=answer)


@asynccontextmanager
async def deploy_engine(state: Path, container_engine: str) -> AsyncIterator[DeployEngine]:
    captured = capture_engine_log()
    nats = start_nats(state / "nats")
    admin: CaddyAdmin | None = None
    try:
        nc = await connect(nats.url, name="bench-container-activation")
        js = nc.jetstream()
        await provision(js)
        env_sub = await answer_env(nc)
        port = free_port()
        listen = listen_address("127.0.0.1", port)
        caddy_dir = state / "engine"
        admin = CaddyAdmin(await ensure_caddy(caddy_dir, listen, binary=venv_binary("caddy")))
        await admin.ensure_server(listen)
        releases = ReleaseStore(caddy_dir / "releases")
        sites = Sites(admin, releases, "localhost")
        app_settings = AppSettings(container_engine=resolve_engine(container_engine))
        instances = InstanceStore(state / "apps")
        logs = AppLogs(js, instances.seq_dir)
        logs.start()
        async with aiohttp.ClientSession() as session:
            probe = EdgeProbe(session, "127.0.0.1", port)
            fleet = Fleet(
                js=js,
                store=instances,
                releases=releases,
                sites=sites,
                admin=admin,
                settings=app_settings,
                logs=logs,
                env_source=nats_env_source(nc, wait_s=app_settings.env_wait_s),
                session=session,
                sandbox=detect_sandbox("auto", variable="LAUNCHDECK_APP_SANDBOX"),
                private=(caddy_dir,),
                site_url=lambda host: f"http://{host}:{port}/",
            )
            handler = DeployHandler(
                js,
                releases,
                sites,
                probe,
                site_url=lambda host: f"http://{host}:{port}/",
                keep_releases=3,
                apps=AppActivation(fleet, sites, releases, probe),
            )
            try:
                yield DeployEngine(handler, fleet, js, captured, port)
            finally:
                await fleet.close()
                await logs.close()
                stop_apps(state, grace_s=5.0)
        await env_sub.unsubscribe()
        await nc.drain()
    finally:
        if admin is not None:
            await admin.close()
        stop_caddy(state / "engine")
        nats.stop()


# --- the measurement -----------------------------------------------------------------------------


@dataclass
class Figures:
    first: list[Run]
    runs: list[Run]


async def measure_kind(
    engine: DeployEngine, kind: AppKind, data: list[bytes], runs: int
) -> Figures:
    project, project_id = f"bench-{kind}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    builds = [str(uuid.uuid4()) for _ in data]
    artifacts = [await engine.put(b, d, kind) for b, d in zip(builds, data, strict=True)]
    first = []
    for build, artifact in zip(builds, artifacts, strict=True):
        first.append(await engine.deploy(project, project_id, build, artifact))
        print(f"  {kind} first deploy of {build[:8]}: {describe(first[-1])}", flush=True)
    measured = []
    for i in range(runs):
        which = i % 2  # v1 is live after the first deploys: v1, v2, v1, … switch every time
        measured.append(await engine.deploy(project, project_id, builds[which], artifacts[which]))
        print(f"  {kind} run {i + 1}: {describe(measured[-1])}", flush=True)
    delivery = Delivery(
        num_delivered=1, max_deliver=1, subject=s.SUBJECT_UNDEPLOY_JOBS, stream_seq=1
    )
    await engine.handler.handle_undeploy(
        UndeployRequested(project_id=project_id, project_name=project), delivery
    )
    return Figures(first, measured)


def describe(run: Run) -> str:
    load = f", image load {run.load_ms:.0f} ms" if run.load_ms is not None else ""
    return f"command → active {run.active_ms:.0f} ms, start → healthy {run.start_ms:.0f} ms{load}"


def spread(values: list[float]) -> str:
    return f"median {median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"


def report(container: Figures, process: Figures) -> None:
    for name, attr in (("deploy command → active", "active_ms"), ("start → healthy", "start_ms")):
        c = [float(getattr(r, attr)) for r in container.runs]
        p = [float(getattr(r, attr)) for r in process.runs]
        print(f"{name}:")
        print(f"  process app:   {spread(p)}")
        print(f"  container app: {spread(c)}")
        print(f"  ratio container/process: {median(c) / median(p):.1f}x")
    print("first deploy of each release (download + extract; a container's image loaded):")
    for kind, figures in (("process", process), ("container", container)):
        for run in figures.first:
            print(f"  {kind}: {describe(run)}")


async def run(runs: int) -> None:
    engine_bin = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman")
    if not engine_bin:
        sys.exit("container_activation bench: podman is not installed")
    with scratch("launchdeck-bench-ctr-activation-") as tmp:
        print("building the releases (image build, pip install)…", flush=True)
        started = time.monotonic()
        c_data, image_ids = await asyncio.to_thread(container_releases, engine_bin, tmp / "images")
        p_data = await asyncio.to_thread(process_releases, tmp / "process")
        print(
            f"  done in {time.monotonic() - started:.0f}s: container release "
            f"{len(c_data[0]) / 1e6:.1f} MB, process release {len(p_data[0]) / 1e6:.1f} MB",
            flush=True,
        )
        try:
            async with deploy_engine(tmp / "state", engine_bin) as engine:
                sandbox = engine.fleet.sandbox
                print(f"process app sandbox: {'bwrap' if sandbox.enabled else 'none'}")
                process = await measure_kind(engine, "process", p_data, runs)
                container = await measure_kind(engine, "container", c_data, runs)
        finally:  # normally removed by the undeploy already
            await asyncio.to_thread(
                subprocess.run, [engine_bin, "rmi", *image_ids], capture_output=True, check=False
            )
    report(container, process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.runs))


if __name__ == "__main__":
    main()
