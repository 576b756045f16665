"""The platform's NATS users (`libs.nats_access`) on a real server configured as `launchdeck dev`
configures its own: a client without credentials is refused, each service's user may do only what
that service does, only the control-api creates streams (the workers wait for them), the operator
keeps `nats micro ls` and `nats stream ls`, and `deploy/nats/` holds the same table."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from structlog.testing import capture_logs

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import (
    Artifact,
    BuildRequested,
    BuildStatusChanged,
    DeployRequested,
)
from launchdeck.devservers import venv_binary
from launchdeck.libs.jetstream import connect, disconnect
from launchdeck.libs.nats_access import (
    OPERATOR_USER,
    SERVICES,
    USERS,
    access_of,
    deploy_config,
    password_variable,
)
from launchdeck.libs.provisioning import platform_streams, provision
from launchdeck.libs.service import open_service
from launchdeck.libs.settings import NatsOptions
from tests.libs.support import RestartableNats
from tests.nats_auth import PASSWORDS
from tests.polling import eventually

DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
# A refused publish gets no reply: how long a request waits for the one that never comes.
REFUSED_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Settings:
    nats_url: str


class Login:
    """A connection as one of the platform's users, with the errors the server sent it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def refused(self, what: str, subject: str) -> str:
        """Wait for the server's refusal of `what` ("publish to", "subscription to") `subject`."""
        expected = f'permissions violation for {what} "{subject}"'.lower()
        return await eventually(
            f"the server to refuse {what} {subject}",
            lambda: next((e for e in self.errors if expected in e.lower()), ""),
            timeout_s=10,
        )


@asynccontextmanager
async def login(server: RestartableNats, user: str) -> AsyncIterator[Login]:
    """Connect to `server` as `user` of the test session (with the service's own inbox, as
    `libs.service` connects it)."""
    errors: list[str] = []

    async def collect(exc: Exception) -> None:
        errors.append(str(exc))

    access = access_of(user)
    inbox = {"inbox_prefix": access.inbox_prefix} if access is not None else {}
    nc = await connect(
        server.plain_url,
        name=f"test-{user}",
        user=user,
        password=PASSWORDS[user],
        error_cb=collect,
        **inbox,
    )
    try:
        yield Login(nc, errors)
    finally:
        await disconnect(nc)


def options(user: str) -> NatsOptions:
    return NatsOptions(user=user, password=PASSWORDS[user])


def build_requested() -> BuildRequested:
    return BuildRequested(
        build_id=str(uuid.uuid4()),
        project_id=str(uuid.uuid4()),
        project_name="victim",
        number=1,
        repo_url="https://example.com/attacker.git",
        ref="main",
    )


def deploy_requested() -> DeployRequested:
    return DeployRequested(
        deployment_id=str(uuid.uuid4()),
        build_id=str(uuid.uuid4()),
        project_id=str(uuid.uuid4()),
        project_name="victim",
        environment="production",
        artifact=Artifact(key="attacker.tar.gz", sha256="0" * 64, size=1),
    )


async def stored(operator: Client, stream: str) -> int:
    return (await operator.jetstream().stream_info(stream)).state.messages


async def test_a_client_without_credentials_is_refused(restartable_nats: RestartableNats) -> None:
    """No credentials, or a wrong password: `Authorization Violation` at connect. A forged
    publish written straight to the socket (what a `postinstall` script would do) is refused
    and nothing reaches the work queue."""
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(restartable_nats.plain_url, allow_reconnect=False, connect_timeout=5)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            restartable_nats.plain_url,
            user="build-worker",
            password="guessed",
            allow_reconnect=False,
            connect_timeout=5,
        )

    operator = await connect(restartable_nats.url, name="test-operator")
    try:
        await provision(operator.jetstream())
        reader, writer = await asyncio.open_connection("127.0.0.1", restartable_nats.port)
        try:
            assert (await reader.readline()).startswith(b"INFO ")
            payload = encode(deploy_requested())
            writer.write(
                b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                + f"PUB {s.SUBJECT_DEPLOY_JOBS} {len(payload)}\r\n".encode()
                + payload
                + b"\r\nPING\r\n"
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(1024), timeout=10)
        finally:
            writer.close()
        assert b"-ERR 'Authorization Violation'" in answer
        assert b"PONG" not in answer
        assert await stored(operator, s.STREAM_DEPLOYS) == 0
    finally:
        await disconnect(operator)


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        # A worker's credentials, leaked to a build, cannot start deploys or touch streams.
        ("build-worker", s.SUBJECT_DEPLOY_JOBS),
        ("build-worker", s.SUBJECT_UNDEPLOY_JOBS),
        ("build-worker", s.SUBJECT_BUILD_JOBS),
        ("build-worker", s.deployment_event_subject("p", "d")),
        ("build-worker", f"$JS.API.STREAM.DELETE.{s.STREAM_BUILDS}"),
        ("build-worker", f"$JS.API.STREAM.CREATE.{s.STREAM_BUILDS}"),
        ("build-worker", f"$JS.API.STREAM.UPDATE.{s.STREAM_EVENTS}"),
        ("build-worker", f"$JS.API.STREAM.PURGE.{s.STREAM_LOGS}"),
        ("build-worker", f"$JS.API.CONSUMER.DELETE.{s.STREAM_BUILDS}.build-workers"),
        ("deploy-engine", s.SUBJECT_BUILD_JOBS),
        ("deploy-engine", s.build_event_subject("p", "b")),
        ("deploy-engine", s.build_log_subject("b")),
        ("deploy-engine", f"$O.{s.OBJECT_STORE_ARTIFACTS}.C.x"),
        ("deploy-engine", f"$JS.API.STREAM.DELETE.{s.STREAM_DEPLOYS}"),
        ("generator", s.SUBJECT_BUILD_JOBS),
        ("generator", f"$JS.API.STREAM.INFO.{s.STREAM_BUILDS}"),
        # The generator's, leaked: no jobs queued or cancelled, no other events forged.
        ("generator", s.SUBJECT_GENERATION_JOBS),
        ("generator", s.SUBJECT_GENERATION_CANCEL),
        ("generator", s.build_event_subject("p", "b")),
        # Even the control-api, which creates the streams, cannot delete one.
        ("control-api", f"$JS.API.STREAM.DELETE.{s.STREAM_EVENTS}"),
        ("control-api", f"$JS.API.STREAM.PURGE.{s.STREAM_LOGS}"),
    ],
)
async def test_a_service_cannot_publish_outside_its_allow_list(
    restartable_nats: RestartableNats, user: str, subject: str
) -> None:
    async with login(restartable_nats, user) as service:
        await service.nc.publish(subject, b"{}")
        await service.nc.flush()
        await service.refused("publish to", subject)


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        # Another service's replies: JetStream answers, the messages its consumers deliver.
        ("build-worker", "_INBOX.>"),
        ("build-worker", "_INBOX.control-api.>"),
        ("deploy-engine", "_INBOX.build-worker.>"),
        ("build-worker", s.SUBJECT_LOGS_ALL),
        ("build-worker", "ld.jobs.>"),
        ("deploy-engine", s.SUBJECT_LOGS_ALL),
        ("generator", s.SUBJECT_EVENTS_ALL),
    ],
)
async def test_a_service_cannot_subscribe_outside_its_allow_list(
    restartable_nats: RestartableNats, user: str, subject: str
) -> None:
    async with login(restartable_nats, user) as service:
        await service.nc.subscribe(subject)
        await service.nc.flush()
        await service.refused("subscription to", subject)


async def test_the_build_workers_user_cannot_queue_a_deploy_or_delete_a_stream(
    restartable_nats: RestartableNats, own_nc: Client
) -> None:
    """With the build-worker's credentials a forged `DeployRequested` is not stored (its publish
    is refused, so JetStream never acknowledges it) and `BUILDS` cannot be deleted; what the
    build-worker does — a build's status event — is stored as before."""
    operator = own_nc.jetstream()
    await provision(operator)
    async with login(restartable_nats, "build-worker") as worker:
        js = worker.nc.jetstream(timeout=REFUSED_TIMEOUT_S)
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(s.SUBJECT_DEPLOY_JOBS, encode(deploy_requested()))
        await worker.refused("publish to", s.SUBJECT_DEPLOY_JOBS)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_stream(s.STREAM_BUILDS)
        await worker.refused("publish to", f"$JS.API.STREAM.DELETE.{s.STREAM_BUILDS}")

        event = BuildStatusChanged(
            build_id=str(uuid.uuid4()),
            project_id=str(uuid.uuid4()),
            status="building",
            at=datetime.now(UTC),
        )
        ack = await worker.nc.jetstream().publish(
            s.build_event_subject(event.project_id, event.build_id), encode(event)
        )
        assert ack.stream == s.STREAM_EVENTS
    assert await stored(own_nc, s.STREAM_DEPLOYS) == 0
    assert (await operator.stream_info(s.STREAM_BUILDS)).config.name == s.STREAM_BUILDS


async def test_the_deploy_engines_user_cannot_queue_a_build(
    restartable_nats: RestartableNats, own_nc: Client
) -> None:
    await provision(own_nc.jetstream())
    async with login(restartable_nats, "deploy-engine") as engine:
        js = engine.nc.jetstream(timeout=REFUSED_TIMEOUT_S)
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(s.SUBJECT_BUILD_JOBS, encode(build_requested()))
        await engine.refused("publish to", s.SUBJECT_BUILD_JOBS)
    assert await stored(own_nc, s.STREAM_BUILDS) == 0


async def test_the_operator_lists_micro_services_and_streams(
    restartable_nats: RestartableNats, own_nc: Client
) -> None:
    """The control-api, as its own user, creates every stream on an empty server; a worker, as
    its own, registers its micro endpoint; the operator's login then sees both, as `nats micro
    ls` (a `$SRV.PING`) and `nats stream ls` (`$JS.API.STREAM.NAMES`) ask."""
    settings = Settings(restartable_nats.plain_url)
    api = open_service(s.SERVICE_CONTROL_API, settings, None, options("control-api"))
    worker = open_service(s.SERVICE_BUILD_WORKER, settings, None, options("build-worker"))
    async with api, worker as service:
        await service.register("test worker", lambda: {"ok": True})
        reply = await own_nc.request("$SRV.PING", b"", timeout=5)
        assert json.loads(reply.data)["name"] == s.SERVICE_BUILD_WORKER
        status = await own_nc.request(s.service_status_subject(s.SERVICE_BUILD_WORKER), b"")
        assert json.loads(status.data) == {"ok": True}
        names = await own_nc.request("$JS.API.STREAM.NAMES", b"{}", timeout=5)
        assert set(json.loads(names.data)["streams"]) == set(platform_streams())


async def test_a_worker_waits_for_the_control_api_to_create_its_streams(
    restartable_nats: RestartableNats, own_nc: Client
) -> None:
    """A build-worker started on an empty server does not create streams (its user may not):
    it says once which ones it waits for, and starts as soon as the control-api has made
    them."""
    settings = Settings(restartable_nats.plain_url)
    with capture_logs() as logs:

        async def start_worker() -> None:
            async with open_service(
                s.SERVICE_BUILD_WORKER, settings, None, options("build-worker")
            ):
                pass

        worker = asyncio.create_task(start_worker())
        began = await eventually(
            "the worker to wait for its streams",
            lambda: [e for e in logs if e["event"] == "outage_began"],
        )
        assert began[0]["what"] == "JetStream streams"
        assert s.STREAM_BUILDS in began[0]["error"]
        assert not worker.done()
        assert (await own_nc.request("$JS.API.STREAM.NAMES", b"{}")).data.count(b"BUILDS") == 0

        async with open_service(s.SERVICE_CONTROL_API, settings, None, options("control-api")):
            await asyncio.wait_for(worker, timeout=30)
    events = [e["event"] for e in logs]
    assert events.count("outage_began") == events.count("outage_ended") == 1
    assert events.count("jetstream_provisioned") == 1  # the control-api's, not the worker's


def test_deploy_nats_holds_the_table() -> None:
    """`deploy/nats/authorization.conf` is this table with the passwords from the environment,
    and both server configurations include it."""
    assert (DEPLOY_NATS / "authorization.conf").read_text() == deploy_config()
    for conf in ("nats.conf", "cluster.conf"):
        assert "include ./authorization.conf" in (DEPLOY_NATS / conf).read_text().splitlines()


@pytest.mark.parametrize("conf", ["nats.conf", "cluster.conf"])
def test_deploy_nats_configurations_need_every_password(conf: str) -> None:
    """nats-server takes each configuration with every user's password in its environment, and
    refuses it with one missing (there are no default passwords)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    passwords = {password_variable(user): f"ld{index}x" for index, user in enumerate(USERS)}

    def check(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv_binary("nats-server"), "-c", conf, "-t"],
            cwd=DEPLOY_NATS,
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    valid = check({**env, **passwords})
    assert valid.returncode == 0, valid.stderr
    missing = password_variable(OPERATOR_USER)
    refused = check({**env, **{k: v for k, v in passwords.items() if k != missing}})
    assert refused.returncode != 0
    assert missing in refused.stderr


def test_every_service_has_a_user_with_its_own_inbox() -> None:
    assert [access.user for access in SERVICES] == [
        "control-api",
        "build-worker",
        "deploy-engine",
        "generator",
    ]
    assert [access.service for access in SERVICES if access.provisions] == [s.SERVICE_CONTROL_API]
    for access in SERVICES:
        assert access.subscribe_allow[0] == f"_INBOX.{access.user}.>"
        assert not any(subject.startswith("_INBOX") for subject in access.subscribe)
        assert "_INBOX.>" not in access.publish
        assert not any("DELETE" in subject and "MSG" not in subject for subject in access.publish)
