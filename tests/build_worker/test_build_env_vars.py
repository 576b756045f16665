"""A build's env vars, end to end through `BuildWorker.handle_build`: asked of a real control-api
env server (`ld.rpc.env`, each side its own NATS user) at the start of the attempt, given to the
build commands, masked as *** in every log line — and nothing of the platform's own environment
reaches the build."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker, env_from_control_api
from launchdeck.build_worker.settings import BUILD_ENV_PASSTHROUGH
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildRequested, EnvTarget
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs import db
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_batches, log_lines
from tests.build_worker.support import delivery, make_settings
from tests.env_rpc import env_server, registered_build, service_connection
from tests.support import GitRepoFactory

RING = KeyRing.from_secrets("build-env-tests-" + uuid.uuid4().hex)
SECRET_VALUE = "sk-live-" + uuid.uuid4().hex
PRODUCTION_VALUE = "prod-only-" + uuid.uuid4().hex
# What the worker process itself holds: the platform's credentials and settings.
PLATFORM_ENV = {
    "DATABASE_URL": "postgresql://launchdeck:db-password-x9@127.0.0.1:5432/launchdeck",
    "NATS_URL": "nats://build-worker:nats-password-x9@127.0.0.1:4222",
    "NATS_USER": "build-worker",
    "NATS_PASSWORD": "nats-password-x9",
    "LAUNCHDECK_SECRET_KEY": "platform-secret-key-x9",
    "LAUNCHDECK_TOKEN": "admin-token-x9",
    "LAUNCHDECK_GIT_TOKEN": "git-token-x9",
}
# Prints the whole environment (`env`), then the secret, as a careless build script would.
PROBE = 'sh -c \'env; echo "token is $API_SECRET"; echo "in a url: https://u:$API_SECRET@x"\''


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def worker_nc(nats_url: str) -> AsyncIterator[Client]:
    """The build-worker's own NATS login (its inbox is how the control-api knows it)."""
    nc = await service_connection(nats_url, "build-worker")
    yield nc
    await nc.close()


async def queued_build(pool: asyncpg.Pool, repo: Path, build_command: str) -> BuildRequested:
    """A project with a `build` secret and a production-only variable, and a queued build."""
    variables: dict[str, tuple[str, list[EnvTarget]]] = {
        "API_SECRET": (SECRET_VALUE, ["build"]),
        "PROD_ONLY": (PRODUCTION_VALUE, ["production"]),
    }
    return await registered_build(
        pool, RING, repo, variables, build_command=build_command, output_dir="."
    )


async def test_secrets_reach_the_build_masked_and_no_platform_variable_does(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nats_url: str,
    worker_nc: Client,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build gets its `build` variables (not the production one) plus PATH, HOME, LANG,
    TMPDIR and CI=true; every line that printed the secret shows *** instead; the worker's own
    variables — database URL, NATS URL and credentials, secret key, admin and git tokens — are
    absent even when the operator's pass-through list names some of them."""
    for name, value in PLATFORM_ENV.items():
        monkeypatch.setenv(name, value)
    repo = make_git_repo({"index.html": "<h1>env</h1>"})
    cmd = await queued_build(pool, repo, PROBE)
    settings = make_settings(
        tmp_path / "builds",
        build_env_passthrough=(*BUILD_ENV_PASSTHROUGH, "DATABASE_URL", "NATS_URL"),
    )
    worker = BuildWorker(js, settings, project_env=env_from_control_api(worker_nc, wait_s=10))

    async with env_server(pool, nats_url, RING):
        assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    lines = await log_lines(js, cmd.build_id)
    text = [line.line for line in lines]
    assert "▶ Env vars: API_SECRET" in text  # names only
    assert "token is ***" in text
    assert "in a url: https://u:***@x" in text

    printed = dict(
        line.line.split("=", 1) for line in lines if line.stream == "stdout" and "=" in line.line
    )
    assert printed["API_SECRET"] == "***"
    assert printed["CI"] == "true"
    assert printed["LANG"] == "C.UTF-8"
    assert printed["HOME"].startswith(str(tmp_path / "builds"))
    assert printed["TMPDIR"] == "/tmp" or printed["TMPDIR"].startswith(str(tmp_path / "builds"))
    assert "PROD_ONLY" not in printed
    leaked = set(printed) & set(PLATFORM_ENV)
    assert not leaked, leaked
    assert not [name for name in printed if name.startswith(("NATS_", "LAUNCHDECK_SECRET"))]

    # No value left the worker in plaintext: not in any stored log batch, not in any event.
    stored = [encode(batch) for batch in await log_batches(js, cmd.build_id)]
    stored += [encode(event) for event in events]
    for value in (SECRET_VALUE, PRODUCTION_VALUE, *PLATFORM_ENV.values()):
        assert not any(value.encode() in message for message in stored), value


async def test_a_build_the_control_api_refuses_fails_with_the_reason(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nats_url: str,
    worker_nc: Client,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A build the control-api no longer hands variables to (here: it was already reported
    finished) fails before cloning, saying why; nothing runs without its variables."""
    repo = make_git_repo({"index.html": "<h1>x</h1>"})
    cmd = await queued_build(pool, repo, "sh -c 'echo must-not-run'")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE builds SET status = 'cancelled' WHERE id = $1", uuid.UUID(cmd.build_id)
        )
    worker = BuildWorker(
        js,
        make_settings(tmp_path / "builds"),
        project_env=env_from_control_api(worker_nc, wait_s=10),
    )
    async with env_server(pool, nats_url, RING):
        assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["failed"]
    assert events[-1].error == "Could not get the project's env vars: build #1 is cancelled"
    text = [line.line for line in await log_lines(js, cmd.build_id)]
    assert "must-not-run" not in text
    assert not any(t.startswith("▶ Cloning") for t in text)


async def test_no_answer_retries_the_attempt_and_runs_nothing(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    worker_nc: Client,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """With no control-api answering, the attempt fails as an infrastructure failure (retried
    by redelivery) with a readable line, and the build command never runs."""
    repo = make_git_repo({"index.html": "<h1>x</h1>"})
    cmd = await queued_build(pool, repo, "sh -c 'echo must-not-run'")
    worker = BuildWorker(
        js,
        make_settings(tmp_path / "builds"),
        project_env=env_from_control_api(worker_nc, wait_s=0.5),
    )
    assert await worker.handle_build(cmd, delivery()) is Outcome.RETRY
    text = [line.line for line in await log_lines(js, cmd.build_id)]
    assert any(
        t.startswith("⚠ Could not get the project's env vars: the control-api did not answer")
        for t in text
    ), text
    assert "must-not-run" not in text
    assert await build_events(js, cmd.project_id, cmd.build_id) == []
