"""The service as users run it: `python -m launchdeck.control_api migrate`, then `serve` as a
real process that answers HTTP, relays commands, applies events and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildStatusChanged
from launchdeck.contracts.subjects import STREAM_BUILDS, build_event_subject
from launchdeck.control_api.migrate import MIGRATIONS_DIR
from launchdeck.devservers import free_port, with_database
from launchdeck.libs.db import migration_files
from launchdeck.libs.tokens import mint, register
from tests.control_api.support import SECRET


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(pg_dsn: str) -> AsyncIterator[str]:
    name = f"ld_main_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_dsn, name)
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def start_service(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "launchdeck.control_api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_module(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launchdeck.control_api", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_migrate_command_applies_every_migration_once(empty_database: str) -> None:
    """`migrate` creates the schema and records each file; a second run applies nothing."""
    env = {**os.environ, "DATABASE_URL": empty_database, "LAUNCHDECK_LOG_FORMAT": "json"}
    first = await asyncio.to_thread(run_module, env, "migrate")
    assert first.returncode == 0, first.stderr
    second = await asyncio.to_thread(run_module, env, "migrate")
    assert second.returncode == 0, second.stderr
    assert '"applied": []' in second.stderr
    conn = await asyncpg.connect(empty_database)
    try:
        applied = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
    finally:
        await conn.close()
    assert sorted(applied) == [p.name for p in migration_files(MIGRATIONS_DIR)]
    assert "0002_deployment_history.sql" in applied


async def test_missing_settings_fail_with_the_variable_name() -> None:
    """Without DATABASE_URL the service exits at once naming the variable, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = await asyncio.to_thread(run_module, env)
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_serve_relays_applies_and_stops_on_sigterm(
    empty_database: str, nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    """The process migrates, serves, publishes the build command, applies events, and exits 0
    on SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": empty_database,
        "NATS_URL": nats_url,
        "LAUNCHDECK_SECRET_KEY": SECRET,
        "LAUNCHDECK_API_PORT": str(port),
        "LAUNCHDECK_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "control-api.log"
    proc = start_service(env, log_path)
    base = f"http://127.0.0.1:{port}"
    admin, claims = mint(SECRET, subject="tests", scopes=["admin"])
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    async with http.get(f"{base}/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.1)

            # The service has migrated: record the token (the API refuses one without a row).
            conn = await asyncpg.connect(empty_database)
            try:
                await register(conn, claims, name="tests", created_by="tests")
            finally:
                await conn.close()
            before = (await js.stream_info(STREAM_BUILDS)).state.messages
            body = {"name": f"proc-{uuid.uuid4().hex[:8]}", "repo_url": "https://x.invalid/r"}
            async with http.post(f"{base}/api/v1/projects", json=body, headers=headers) as resp:
                assert resp.status == 201
                project = await resp.json()
            async with http.post(
                f"{base}/api/v1/projects/{project['id']}/builds", json={}, headers=headers
            ) as resp:
                assert resp.status == 202
                build = await resp.json()

            deadline = time.monotonic() + 15
            while (await js.stream_info(STREAM_BUILDS)).state.messages < before + 1:
                assert time.monotonic() < deadline, "BuildRequested never published"
                await asyncio.sleep(0.05)

            event = BuildStatusChanged(
                build_id=build["id"],
                project_id=project["id"],
                status="cloning",
                step="clone",
                at=build["created_at"],
            )
            await js.publish(build_event_subject(project["id"], build["id"]), encode(event))
            deadline = time.monotonic() + 15
            while True:
                async with http.get(f"{base}/api/v1/builds/{build['id']}", headers=headers) as r:
                    current = await r.json()
                if current["status"] == "cloning":
                    break
                assert time.monotonic() < deadline, current
                await asyncio.sleep(0.05)
            assert current["started_at"] is not None

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0, log_path.read_text()
        assert "service_stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
