"""`launchdeck env set|unset|list` and `launchdeck redeploy` against the real control-api (the
application in a thread of its own, over the module's Postgres and the session's NATS): what
is printed, exit codes, values never shown, a value read from standard input."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
from aiohttp import web

from launchdeck.cli.main import run
from launchdeck.control_api.app import create_app
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain.sealing import KeyRing, Sealed
from launchdeck.control_api.store import builds as builds_store
from launchdeck.devservers import free_port
from launchdeck.libs import db
from launchdeck.libs.jetstream import connect
from tests.control_api.helpers import activate, new_build, succeed
from tests.control_api.support import SECRET, make_settings, register_tokens, token, unique

T = TypeVar("T")
SECRET_VALUE = "cli-s3cret-" + uuid.uuid4().hex
ADMIN = token(["admin"])


@dataclass
class RealApi:
    """The control-api's application served on `url` from an event loop in its own thread
    (the CLI under test runs `asyncio.run` itself)."""

    url: str
    loop: asyncio.AbstractEventLoop
    pool: asyncpg.Pool

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the application's loop (its pool belongs there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture
def real_api(database_url: str, nats_url: str) -> Iterator[RealApi]:
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    held: dict[str, Any] = {}

    async def start() -> None:
        held["pool"] = pool = await db.create_pool(database_url, max_size=4)
        held["nc"] = nc = await connect(nats_url, name="launchdeck-cli-tests")
        settings = make_settings(database_url, nats_url)
        app = create_app(settings, pool, nc, nc.jetstream(), background_tasks=False)
        await register_tokens(pool)  # the API refuses a token without its api_tokens row
        held["runner"] = runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    async def stop() -> None:
        await held["runner"].cleanup()
        await held["nc"].close()
        await held["pool"].close()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    try:
        yield RealApi(f"http://127.0.0.1:{port}", loop, held["pool"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def cli(api: RealApi, *args: str) -> int:
    return run([*args, "--api-url", api.url, "--token", ADMIN], environ={})


# The application's own log lines (structlog's console format) share stdout with the CLI here.
_SERVICE_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def printed(text: str) -> list[str]:
    """What the CLI printed, without the in-process API's log lines."""
    return [line for line in text.splitlines() if not _SERVICE_LOG.match(line)]


def test_env_set_list_and_unset(
    real_api: RealApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """set (from the command line, or from stdin when the value is left out) → list shows names
    and targets only → unset; a bad name or a missing var is a readable error, exit 1."""
    name = unique("cli-env")
    assert cli(real_api, "projects", "create", name, "https://git.invalid/r.git") == 0
    capsys.readouterr()

    assert cli(real_api, "env", "set", name, "API_TOKEN", SECRET_VALUE, "--target", "build") == 0
    out = capsys.readouterr().out
    assert f"Set API_TOKEN of {name} for build" in out
    assert f"launchdeck redeploy {name}" in out

    pem = "-----BEGIN KEY-----\nabc" + uuid.uuid4().hex + "\n-----END KEY-----"
    monkeypatch.setattr(sys, "stdin", io.StringIO(pem + "\n"))
    assert cli(real_api, "env", "set", name, "TLS_KEY") == 0
    assert f"Set TLS_KEY of {name} for build, preview, production" in capsys.readouterr().out
    project = real_api.run(_project(real_api.pool, name))
    assert real_api.run(_value(real_api.pool, project, "TLS_KEY")) == pem  # final newline off

    assert cli(real_api, "env", "list", name) == 0
    listed = printed(capsys.readouterr().out)
    assert listed[0].split() == ["KEY", "TARGETS", "UPDATED"]
    assert [line.split()[:2] for line in listed[1:]] == [
        ["API_TOKEN", "build"],
        ["TLS_KEY", "build,preview,production"],
    ]
    assert SECRET_VALUE not in "\n".join(listed)

    assert cli(real_api, "env", "set", name, "bad-name", "v") == 1
    assert "key: must be an environment variable name" in capsys.readouterr().err

    assert cli(real_api, "env", "unset", name, "API_TOKEN") == 0
    assert f"Removed API_TOKEN from {name}" in capsys.readouterr().out
    assert cli(real_api, "env", "unset", name, "API_TOKEN") == 1
    assert f"project {name!r} has no env var API_TOKEN" in capsys.readouterr().err
    assert cli(real_api, "env", "list", name) == 0
    assert "API_TOKEN" not in capsys.readouterr().out


def test_redeploy(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing live: the API's reason, exit 1. A live build: a new deployment of that build,
    followed until it settles (here it stays pending: no deploy-engine, so the wait ends)."""
    name = unique("cli-redeploy")
    assert cli(real_api, "projects", "create", name, "https://git.invalid/r.git") == 0
    capsys.readouterr()
    assert cli(real_api, "redeploy", name) == 1
    assert "no live production deployment to redeploy" in capsys.readouterr().err

    project = real_api.run(_project(real_api.pool, name))
    live = real_api.run(_live_deployment(real_api.pool, project))
    assert cli(real_api, "redeploy", name, "--timeout", "0.2") == 1
    captured = capsys.readouterr()
    first = printed(captured.out)[0]
    assert first.startswith(f"Redeploying {name}: deployment ")
    assert first.endswith(f" of build {live.build_id}")
    assert "pending" in captured.out
    assert "is still pending after 0.2s" in captured.err


async def _project(pool: asyncpg.Pool, name: str) -> Any:
    async with pool.acquire() as conn:
        return await projects_service.resolve_project(conn, name)


async def _value(pool: asyncpg.Pool, project: Any, key: str) -> str:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT nonce, ciphertext, key_id FROM env_vars WHERE project_id = $1 AND key = $2",
            project.id,
            key,
        )
    sealed = Sealed(bytes(row["nonce"]), bytes(row["ciphertext"]), row["key_id"])
    return KeyRing.from_secrets(SECRET).open(project.id, key, sealed)


async def _live_deployment(pool: asyncpg.Pool, project: Any) -> Any:
    build = await new_build(pool, project)
    deployment = await activate(pool, await succeed(pool, build), datetime.now(UTC))
    async with pool.acquire() as conn:
        assert await builds_store.get(conn, build.id) is not None
    return deployment
