"""Helpers for the tests of running apps: the engine with its fleet, a stand-in for the
control-api's env var answers, and readers of what the engine publishes (events, app logs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    AppLogBatch,
    Artifact,
    DeploymentStatusChanged,
    EnvReply,
    EnvRequest,
)
from launchdeck.contracts.statuses import Environment
from launchdeck.deploy_engine.apps.fleet import Fleet, Instance
from launchdeck.deploy_engine.apps.health_check import HealthPolicy
from launchdeck.deploy_engine.settings import AppSettings
from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, marked_pids
from tests.deploy_engine.support import Engine
from tests.polling import eventually

# Short timings, so that restarts, drains and health checks take milliseconds in tests.
FAST = AppSettings(
    health=HealthPolicy(start_timeout_s=20.0, tries=3, interval_s=0.2, timeout_s=3.0),
    worker_start_s=0.3,
    stop_grace_s=3.0,
    restart_backoff_s=0.05,
    restart_backoff_max_s=0.4,
    crash_limit=3,
    crash_window_s=30.0,
    max_previews=2,
    release_command_timeout_s=30.0,
    env_wait_s=5.0,
)


class EnvResponder:
    """Answers `ld.rpc.env` as the control-api would: the vars set here for a project and
    target; `refused` deployments get an error."""

    def __init__(self) -> None:
        self.vars: dict[tuple[str, str], dict[str, str]] = {}
        self.refused: set[str] = set()
        self.requests: list[EnvRequest] = []

    def set(self, project_id: str, target: str, **values: str) -> None:
        self.vars[(project_id, target)] = dict(values)

    async def answer(self, msg: Msg) -> None:
        request = decode(msg.data, EnvRequest)
        self.requests.append(request)
        if request.deployment_id in self.refused:
            reply = EnvReply(error="the deployment is superseded")
        else:
            reply = EnvReply(vars=self.vars.get((request.project_id, request.target), {}))
        await msg.respond(encode(reply))

    @contextlib.asynccontextmanager
    async def serving(self, nc: Client) -> AsyncIterator[EnvResponder]:
        sub = await nc.subscribe(s.SUBJECT_ENV_REQUESTS, cb=self.answer)
        await nc.flush()
        try:
            yield self
        finally:
            await sub.unsubscribe()


@dataclass
class LogReader:
    """Every app log batch of a project, as it arrives (an ordered consumer from the start)."""

    batches: list[AppLogBatch] = field(default_factory=list)

    def lines(self, process: str | None = None, deployment_id: str | None = None) -> list[str]:
        return [
            line.line
            for batch in self.batches
            if (process is None or batch.process == process)
            and (deployment_id is None or batch.deployment_id == deployment_id)
            for line in batch.lines
        ]

    def text(self, **match: str) -> str:
        return "\n".join(self.lines(**match))


@contextlib.asynccontextmanager
async def read_app_logs(js: JetStreamContext, project_id: str) -> AsyncIterator[LogReader]:
    reader = LogReader()

    async def on_msg(msg: Msg) -> None:
        reader.batches.append(decode(msg.data, AppLogBatch))

    sub = await js.subscribe(s.app_log_subject(project_id), cb=on_msg, ordered_consumer=True)
    try:
        yield reader
    finally:
        await sub.unsubscribe()


@dataclass
class AppEngine:
    """The deploy handler with apps, on the module's Caddy, for one fresh project."""

    engine: Engine
    fleet: Fleet
    env: EnvResponder
    apps_dir: Path

    @property
    def project(self) -> str:
        return self.engine.project

    @property
    def project_id(self) -> str:
        return self.engine.project_id

    async def deploy(
        self,
        build_id: str,
        data: bytes | None = None,
        *,
        environment: Environment = "production",
    ) -> tuple[Outcome, list[DeploymentStatusChanged]]:
        """Deploy the process release `data` (None: a rollback to a release on disk)."""
        artifact = None
        if data is not None:
            stored = await self.engine.put_artifact(build_id, data)
            artifact = msgspec.structs.replace(stored, kind="process")
        elif not self.engine.edge.store.has_release(self.project, build_id):
            artifact = Artifact(key=f"{build_id}.tar.gz", sha256="0" * 64, size=0, kind="process")
        return await self.engine.deploy(build_id, environment=environment, artifact=artifact)

    async def get(self, path: str = "/", host: str | None = None) -> tuple[int, str]:
        status, _, body = await self.engine.edge.get(host or f"{self.project}.localhost", path)
        return status, body

    def live(self, slot: str = "production") -> list[Instance]:
        return self.fleet.in_slot(self.project, slot)

    def web(self, slot: str = "production") -> Instance:
        web = self.fleet.web_of(self.project, slot)
        assert web is not None, f"no live web process in {slot}"
        return web

    def processes(self) -> dict[int, str]:
        """Every process carrying the marker of one of this engine's instances."""
        root = str(self.apps_dir)
        return marked_pids(lambda marker: marker.startswith(root + "/"), APP_MARKER_VAR)


def new_build() -> str:
    return str(uuid.uuid4())


async def deployment_events(
    js: JetStreamContext, project_id: str, deployment_id: str
) -> list[DeploymentStatusChanged]:
    """Every event of one deployment stored so far."""
    sub = await js.subscribe(
        s.deployment_event_subject(project_id, deployment_id), ordered_consumer=True
    )
    found: list[DeploymentStatusChanged] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            found.append(decode(msg.data, DeploymentStatusChanged))
    finally:
        await sub.unsubscribe()


async def wait_statuses(
    js: JetStreamContext,
    project_id: str,
    deployment_id: str,
    wanted: list[str],
    timeout_s: float = 30,
) -> list[DeploymentStatusChanged]:
    async def check() -> list[DeploymentStatusChanged] | None:
        events = await deployment_events(js, project_id, deployment_id)
        return events if [e.status for e in events][: len(wanted)] == wanted else None

    return await eventually(f"deployment statuses {wanted}", check, timeout_s, interval_s=0.1)


@dataclass
class Load:
    """Client loops requesting a site through the edge without pause, each on keep-alive."""

    port: int
    host: str
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)  # start, end
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _loop(self, path: str) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    async with session.get(
                        f"http://127.0.0.1:{self.port}{path}", headers={"Host": self.host}
                    ) as resp:
                        body = await resp.text()
                        self.answers.append((started, time.monotonic(), resp.status, body))
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.failures.append((started, repr(exc)))

    @contextlib.asynccontextmanager
    async def running(self, loops: int, slow_loops: int = 0) -> AsyncIterator[Load]:
        """`loops` clients asking for `/`, and `slow_loops` for `/slow` (answered 300 ms later:
        always some in flight when the route moves)."""
        paths = ["/"] * loops + ["/slow"] * slow_loops
        tasks = [asyncio.create_task(self._loop(path)) for path in paths]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


def where(answers: list[tuple[float, float, int, str]], cond: Callable[[float], bool]) -> set[str]:
    """The bodies of the answers whose request started at a time `cond` accepts."""
    return {body for started, _end, _status, body in answers if cond(started)}
