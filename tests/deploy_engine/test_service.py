"""The deploy-engine as a process: consumes DEPLOYS, serves health, and a restart keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import Artifact, DeploymentStatusChanged, DeployRequested
from launchdeck.deploy_engine.caddy import stop_caddy
from launchdeck.devservers import free_port

from .archives import sha256, site


class EngineProcess:
    def __init__(self, state_dir: Path, env: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "deploy-engine.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "launchdeck.deploy_engine"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    async def wait_ready(self, url: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"engine exited:\n{self.log.read_text()[-3000:]}")
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"engine not ready:\n{self.log.read_text()[-3000:]}")


@pytest.fixture
def engine_process(
    tmp_path_factory: pytest.TempPathFactory, nats_url: str
) -> Iterator[EngineProcess]:
    state_dir = tmp_path_factory.mktemp("svc")
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "LAUNCHDECK_STATE_DIR": str(state_dir),
        "LAUNCHDECK_EDGE_HTTP_PORT": str(free_port()),
        "LAUNCHDECK_DEPLOY_ENGINE_PORT": str(free_port()),
        "LAUNCHDECK_LOG_FORMAT": "json",
    }
    env.pop("LAUNCHDECK_CADDY_ADMIN", None)
    process = EngineProcess(state_dir, env)
    try:
        yield process
    finally:
        process.stop()
        stop_caddy(state_dir)


async def edge_get(port: str, host: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as resp,
    ):
        return resp.status, await resp.text()


async def test_engine_deploys_from_the_queue_and_survives_a_restart(
    engine_process: EngineProcess, nc: Client, js: JetStreamContext
) -> None:
    """A queued deploy goes live; after SIGTERM Caddy keeps serving; a restart re-routes."""
    env = engine_process.env
    edge_port = env["LAUNCHDECK_EDGE_HTTP_PORT"]
    engine_url = f"http://127.0.0.1:{env['LAUNCHDECK_DEPLOY_ENGINE_PORT']}"
    engine_process.start()
    await engine_process.wait_ready(f"{engine_url}/health")

    info = await nc.request(f"$SRV.INFO.{s.SERVICE_DEPLOY_ENGINE}", b"", timeout=5)
    assert json.loads(info.data)["name"] == s.SERVICE_DEPLOY_ENGINE

    project = f"svc-{uuid.uuid4().hex[:8]}"
    project_id, build_id, deployment_id = (str(uuid.uuid4()) for _ in range(3))
    data = site({"index.html": "<p>from the queue</p>"})
    objects = await js.object_store(s.OBJECT_STORE_ARTIFACTS)
    await objects.put(f"{build_id}.tar.gz", data)
    events = await js.subscribe(
        s.deployment_event_subject(project_id, deployment_id), ordered_consumer=True
    )
    cmd = DeployRequested(
        deployment_id=deployment_id,
        project_id=project_id,
        project_name=project,
        build_id=build_id,
        environment="production",
        artifact=Artifact(key=f"{build_id}.tar.gz", sha256=sha256(data), size=len(data)),
        requested_at=datetime.now(UTC),
    )
    await js.publish(s.SUBJECT_DEPLOY_JOBS, encode(cmd), headers={"Nats-Msg-Id": deployment_id})
    statuses: list[str] = []
    while not statuses or statuses[-1] not in ("active", "failed"):
        msg = await events.next_msg(timeout=30)
        statuses.append(decode(msg.data, DeploymentStatusChanged).status)
    await events.unsubscribe()
    assert statuses == ["activating", "active"], engine_process.log.read_text()[-3000:]

    host = f"{project}.localhost"
    assert await edge_get(edge_port, host) == (200, "<p>from the queue</p>")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{engine_url}/api/health/{project}") as resp:
            assert resp.status == 200
            assert (await resp.json())["build_id"] == build_id
        async with session.get(f"{engine_url}/api/health/no-such-project") as resp:
            assert resp.status == 503

    assert engine_process.stop() == 0
    # Caddy is not the engine's child process group: the site stays up while it is down.
    assert await edge_get(edge_port, host) == (200, "<p>from the queue</p>")

    engine_process.start()
    await engine_process.wait_ready(f"{engine_url}/api/health/{project}")
    assert await edge_get(edge_port, host) == (200, "<p>from the queue</p>")
    assert '"caddy_reused"' in engine_process.log.read_text()

    # Even with Caddy gone too, a start serves every active release again without a rebuild.
    assert engine_process.stop() == 0
    assert stop_caddy(engine_process.state_dir)
    engine_process.start()
    await engine_process.wait_ready(f"{engine_url}/api/health/{project}")
    assert await edge_get(edge_port, host) == (200, "<p>from the queue</p>")
