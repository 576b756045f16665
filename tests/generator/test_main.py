"""The generator as a process: started before NATS, it waits, then comes up when NATS does and
its stream exists (the control-api creates it: here the test does)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from launchdeck.contracts.subjects import SERVICE_GENERATOR, service_status_subject
from launchdeck.devservers import NatsServer, free_port, start_nats
from launchdeck.libs.jetstream import connect
from launchdeck.libs.provisioning import provision
from tests.service_process import ServiceProcess, service_env


@pytest.fixture
def generator(tmp_path: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    env = service_env("generator", tmp_path / "state", NATS_URL=f"nats://127.0.0.1:{port}")
    process = ServiceProcess("generator", env, tmp_path / "generator.log")
    yield process
    process.kill()


async def test_starts_before_nats_and_comes_up_once_nats_does(
    generator: ServiceProcess, tmp_path: Path
) -> None:
    """Started with NATS not up yet, the generator waits (one outage_began for NATS), connects
    when the server appears (one outage_ended), waits for its stream, registers its micro
    endpoint and answers PING and status (no job running); SIGTERM then stops it with exit
    code 0."""
    url = generator.env["NATS_URL"]
    generator.start()
    await generator.wait_for("outage_began", what="NATS", url=url)

    server: NatsServer = await asyncio.to_thread(
        start_nats, tmp_path / "nats", int(url.rsplit(":", 1)[1]), tmp_path / "nats.log"
    )
    try:
        nc = await connect(url, name="test-generator-ping")
        try:
            await provision(nc.jetstream())
            await generator.wait_for("generator_ready")
            reply = await nc.request(f"$SRV.PING.{SERVICE_GENERATOR}", b"", timeout=5)
            assert json.loads(reply.data)["name"] == SERVICE_GENERATOR
            status = await nc.request(service_status_subject(SERVICE_GENERATOR), b"", timeout=5)
            assert json.loads(status.data)["jobs_running"] == 0
        finally:
            await nc.close()
        assert await asyncio.to_thread(generator.stop, signal.SIGTERM) == 0, generator.output
    finally:
        await asyncio.to_thread(server.stop)
    nats_outage = [e["event"] for e in generator.events() if e.get("what") == "NATS"]
    assert nats_outage == ["outage_began", "outage_ended"]
    events = [e["event"] for e in generator.events()]
    assert events[-1] == "service_stopped"
