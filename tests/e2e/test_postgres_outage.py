"""The platform rides out a PostgreSQL outage: while the database is away the API answers 503
problem+json with Retry-After at once (never a 500, never a hang), /ready says why; when it is
back the API recovers by itself — no restart, no process exited — and builds run again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from launchdeck.devservers import with_database
from launchdeck.libs import db
from launchdeck.libs.nats_access import new_password
from tests.conftest import MIGRATIONS
from tests.e2e.support import Api, Platform, create_project, deploy, launch_platform
from tests.polling import eventually
from tests.restartable_postgres import RestartablePostgres
from tests.support import GitRepoFactory

# Each answer during the outage comes within this (the pool's acquire and command timeouts).
ANSWER_WITHIN_S = 8.0


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePostgres]:
    """This module's own PostgreSQL (the session's is shared and must not be stopped)."""
    pg = RestartablePostgres(tmp_path_factory.mktemp("own-pg") / "data", new_password())
    pg.start_first()
    try:
        yield pg
    finally:
        pg.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, own_postgres: RestartablePostgres, nats_url: str
) -> AsyncIterator[Platform]:
    admin = await asyncpg.connect(own_postgres.dsn)
    try:
        await admin.execute('CREATE DATABASE "launchdeck"')
    finally:
        await admin.close()
    dsn = with_database(own_postgres.dsn, "launchdeck")
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn, MIGRATIONS)
    finally:
        await conn.close()
    async with launch_platform(tmp_path_factory.mktemp("pg-outage"), dsn, nats_url) as p:
        yield p


SLOW_BUILD = """\
import os, time
os.makedirs("dist", exist_ok=True)
for i in range(20):
    print(f"step {i}", flush=True)
    time.sleep(0.1)
open("dist/index.html", "w").write("<h1>slow</h1>")
"""


async def _status_is(api: Api, build_id: str, status: str) -> bool:
    _, build = await api.call("GET", f"/builds/{build_id}")
    return bool(build["status"] == status)


def _succeeded_lines(platform: Platform) -> str:
    return "\n".join(
        line for line in platform.logs("build_worker").splitlines() if "build_succeeded" in line
    )


async def timed(api: Api, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    """One call, raw (any path), with its headers; it must answer within ANSWER_WITHIN_S."""
    started = time.monotonic()
    async with api.session.request(
        method, f"{api.platform.api_url}{path}", json=body, headers=api.platform.headers
    ) as resp:
        text = await resp.text()
        headers = resp.headers
        status = resp.status
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_WITHIN_S, f"{method} {path} took {elapsed:.1f}s"
    return status, text, headers


def assert_unavailable(answer: tuple[int, Any, Any], what: str) -> None:
    status, text, headers = answer
    assert status == 503, f"{what}: {status} {text}"
    assert headers["Content-Type"].startswith("application/problem+json"), what
    assert int(headers["Retry-After"]) > 0, what


async def test_api_answers_503_while_postgres_is_away_and_recovers_by_itself(
    api: Api, platform: Platform, own_postgres: RestartablePostgres, make_git_repo: GitRepoFactory
) -> None:
    """Postgres stopped under the running control-api: /ready 503 naming postgres; reads and
    writes 503 problem+json with Retry-After within seconds, again and again; started again: the
    API serves, a build runs and deploys, and no service process exited meanwhile."""
    repo = make_git_repo({"index.html": "<h1>up</h1>"})
    await create_project(api, "steady", repo)
    await deploy(api, "steady")
    # A build that is running when the database goes, and finishes while it is away: its
    # status events wait in EVENTS (nak'ed) until the events consumer can apply them.
    slow_repo = make_git_repo({"build.py": SLOW_BUILD})
    await create_project(
        api, "slow", slow_repo, build={"build_command": "python3 build.py", "output_dir": "dist"}
    )
    status, slow = await api.call("POST", "/projects/slow/builds", {})
    assert status == 202, slow
    await eventually("the slow build running", lambda: _status_is(api, slow["id"], "building"))

    await own_postgres.astop()
    try:
        status, body = await api.call("GET", "/projects")  # a first try may see a dead session
        assert status in (503,), body

        async def not_ready() -> dict[str, Any] | None:
            status, text, _ = await timed(api, "GET", "/ready")
            return None if status != 503 else {"text": text}

        ready = await eventually("/ready 503", not_ready, timeout_s=15)
        assert '"postgres"' in ready["text"]
        for _ in range(3):  # repeatedly, not only the first time
            assert_unavailable(await timed(api, "GET", "/api/v1/projects"), "list projects")
            assert_unavailable(await timed(api, "GET", "/api/v1/projects/steady"), "a project")
            later = {"name": "later", "repo_url": str(repo)}
            assert_unavailable(
                await timed(api, "POST", "/api/v1/projects", later), "create a project"
            )
            assert_unavailable(
                await timed(api, "POST", "/api/v1/projects/steady/builds", {}), "request a build"
            )
        await eventually(
            "the slow build finished at the worker, the database still away",
            lambda: f'"build_id": "{slow["id"]}"' in _succeeded_lines(platform),
            timeout_s=30,
        )
        assert_unavailable(await timed(api, "GET", f"/api/v1/builds/{slow['id']}"), "a build")
        for name, proc in platform.processes.items():
            assert proc.poll() is None, f"{name} exited:\n{platform.logs(name)[-3000:]}"
    finally:
        await own_postgres.astart()

    async def ready_again() -> bool:
        status, _, _ = await timed(api, "GET", "/ready")
        return status == 200

    await eventually("/ready 200 again", ready_again, timeout_s=30)
    status, projects = await api.call("GET", "/projects")
    assert status == 200, projects
    assert sorted(p["name"] for p in projects["items"]) == ["slow", "steady"]
    # The events that came during the outage are applied: the build ends and deploys.
    finished = await api.wait_build(slow["id"], timeout_s=60)
    assert (finished["status"], finished["attempt"]) == ("succeeded", 1), finished
    await api.wait_build_deployment(slow["id"], timeout_s=60)
    await create_project(api, "later", repo)
    # The outbox relay and the events consumer came back too: a build runs end to end.
    await deploy(api, "later")
    for name, proc in platform.processes.items():
        assert proc.poll() is None, f"{name} exited:\n{platform.logs(name)[-3000:]}"
    # An outage is warned about (once per loop), not reported as errors with tracebacks.
    log = platform.logs("control_api")
    assert "Traceback" not in log
    assert '"level": "error"' not in log
