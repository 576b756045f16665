"""`launchdeck cancel <build>` and `launchdeck logs <project> --app [-f]` against the real
control-api (in-process, over the module's Postgres and the session's NATS): the build named by
id, project or project#number; what is printed and the exit codes; an app's lines published as
the deploy-engine publishes them, printed as `time process[deployment] line`, live with -f."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.api import app_log_text
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import AppLogBatch, LogLine
from launchdeck.contracts.subjects import app_log_subject
from launchdeck.control_api.app import create_app
from launchdeck.control_api.store.records import Build, Project
from launchdeck.libs import db
from launchdeck.libs.jetstream import connect
from launchdeck.libs.nats_access import access_of
from tests.control_api.helpers import apply, build_event, get_build, new_build, new_project
from tests.control_api.support import ApiClient, make_settings, register_tokens, token
from tests.nats_auth import login_url
from tests.polling import eventually

ADMIN = token(["admin"])


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> AsyncIterator[str]:
    """The control-api's URL: the real application, in this process, on a free port."""
    app = create_app(make_settings(database_url, nats_url), pool, nc, js, background_tasks=False)
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    await register_tokens(pool)  # the CLI's requests do not go through ApiClient
    try:
        yield str(client.make_url("")).rstrip("/")
    finally:
        await client.close()


PROGRAM = shutil.which("launchdeck", path=os.path.dirname(sys.executable)) or "launchdeck"


@dataclass(frozen=True)
class Ran:
    code: int
    out: list[str]
    err: str


async def start(url: str, *args: str) -> asyncio.subprocess.Process:
    """The command as installed, as a user runs it, against the API at `url`."""
    return await asyncio.create_subprocess_exec(
        PROGRAM,
        *args,
        *("--api-url", url, "--token", ADMIN),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )


async def cli(url: str, *args: str) -> Ran:
    proc = await start(url, *args)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode().splitlines(), err.decode())


async def building(pool: asyncpg.Pool, project: Project) -> Build:
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "building", step="build"))
    return build


async def test_cancel_a_queued_build_by_project_and_number(
    api_url: str, pool: asyncpg.Pool
) -> None:
    """`cancel <project>#<n>` of a queued build: cancelled at once, exit 0; again: the 409
    problem, exit 1; an unknown number: exit 1 saying so."""
    project = await new_project(pool)
    await new_build(pool, project)
    queued = await new_build(pool, project)
    ran = await cli(api_url, "cancel", f"{project.name}#2")
    assert (ran.code, ran.out) == (0, [f"Build #2 {queued.id} cancelled (it never ran)"])
    assert (await get_build(pool, queued.id)).status == "cancelled"

    again = await cli(api_url, "cancel", f"{project.name}#2")
    assert again.code == 1
    assert "has already finished: cancelled" in again.err
    unknown = await cli(api_url, "cancel", f"{project.name}#9")
    assert unknown.code == 1
    assert unknown.err.strip().endswith(f"project {project.name!r} has no build #9")


async def test_cancel_a_running_build_waits_until_it_has_stopped(
    api_url: str, pool: asyncpg.Pool
) -> None:
    """`cancel <project>` (its latest build) of a running build waits for its worker's
    `cancelled`, then exits 0; `--no-wait` returns at once."""
    project = await new_project(pool)
    build = await building(pool, project)
    command = asyncio.create_task(cli(api_url, "cancel", project.name))

    async def asked() -> bool:
        return (await get_build(pool, build.id)).cancel_requested_at is not None

    await eventually("the cancel to be asked for", asked)
    assert not command.done()
    stopped = build_event(build, "cancelled", error="Cancelled on request", reason="cancelled")
    await apply(pool, stopped)
    ran = await asyncio.wait_for(command, 30)
    assert (ran.code, ran.out) == (
        0,
        [
            f"Cancelling build #1 {build.id} (building)…",
            "Build #1 cancelled: its processes were stopped",
        ],
    )

    other = await building(pool, project)
    quick = await cli(api_url, "cancel", str(other.id), "--no-wait")
    assert (quick.code, quick.out) == (0, [f"Cancelling build #2 {other.id} (building)…"])


async def test_cancel_of_a_build_that_finished_first_exits_1(
    api_url: str, pool: asyncpg.Pool
) -> None:
    """The worker finished the build before it heard the cancel: exit 1, saying how it ended."""
    project = await new_project(pool)
    build = await building(pool, project)
    command = asyncio.create_task(cli(api_url, "cancel", str(build.id)))

    async def asked() -> bool:
        return (await get_build(pool, build.id)).cancel_requested_at is not None

    await eventually("the cancel to be asked for", asked)
    await apply(pool, build_event(build, "failed", error="exit 1"))
    ran = await asyncio.wait_for(command, 30)
    assert ran.code == 1
    assert "finished failed before it could be cancelled" in ran.err


class EngineLogs:
    """Publishes a deployment's app output as the deploy-engine does, as its NATS user."""

    def __init__(self, nc: Client, project: Project) -> None:
        self.js = nc.jetstream()
        self.project = project
        self.deployment_id = str(uuid.uuid4())
        self.seq = 0

    async def prints(self, process: str, text: str) -> str:
        """Publish one line; returns it as the CLI prints it."""
        self.seq += 1
        line = LogLine(seq=self.seq, ts=datetime.now(UTC), stream="stdout", line=text)
        batch = AppLogBatch(
            project_id=str(self.project.id),
            deployment_id=self.deployment_id,
            process=process,
            lines=[line],
        )
        await self.js.publish(app_log_subject(str(self.project.id)), encode(batch))
        return app_log_text(line.ts, process, self.deployment_id, text)


@pytest_asyncio.fixture(loop_scope="session")
async def engine_nc(nats_url: str) -> AsyncIterator[Client]:
    access = access_of("deploy-engine")
    assert access is not None
    nc = await connect(
        login_url(nats_url, "deploy-engine"), name=access.service, inbox_prefix=access.inbox_prefix
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_logs_app_prints_the_recent_lines(
    api_url: str, pool: asyncpg.Pool, engine_nc: Client
) -> None:
    """`logs <project> --app -n 2`: the last two lines of the running app."""
    project = await new_project(pool)
    engine = EngineLogs(engine_nc, project)
    await engine.prints("release", "migrated")
    shown = [await engine.prints("web", "listening"), await engine.prints("worker", "ready")]
    ran = await cli(api_url, "logs", project.name, "--app", "-n", "2")
    assert (ran.code, ran.out) == (0, shown)
    unknown = await cli(api_url, "logs", "no-such-project", "--app")
    assert unknown.code == 1
    assert "no project 'no-such-project'" in unknown.err


async def test_logs_app_follow_prints_new_lines_as_they_come(
    api_url: str, pool: asyncpg.Pool, engine_nc: Client
) -> None:
    """`logs <project> --app -f -n 1` (the command as installed, as a process): the last line,
    then each new one as the app prints it, until interrupted."""
    project = await new_project(pool)
    engine = EngineLogs(engine_nc, project)
    await engine.prints("web", "old")
    recent = await engine.prints("web", "recent")
    proc = await start(api_url, "logs", project.name, "--app", "-f", "-n", "1")
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert first.decode().rstrip("\n") == recent
        live = await engine.prints("worker", "live line")
        second = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert second.decode().rstrip("\n") == live
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 130
