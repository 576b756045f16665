"""The control-api process started before its database: it waits for Postgres (saying so once,
without the password), stops at once on SIGTERM meanwhile, and serves once Postgres is there."""

from __future__ import annotations

import asyncio
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from launchdeck.devservers import free_port
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env


def with_socket_dir(dsn: str, socket_dir: Path) -> str:
    """`dsn` reaching its server through the unix socket in `socket_dir`."""
    parts = urllib.parse.urlsplit(dsn)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "host"]
    query.append(("host", str(socket_dir)))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/")))


def socket_dir_of(dsn: str) -> Path:
    host = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(dsn).query)).get("host")
    if host is None:
        pytest.skip("needs a Postgres reached through a unix socket (the embedded one)")
    return Path(host)


@pytest.fixture
def control_api(database_url: str, nats_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The control-api with a DATABASE_URL whose socket directory does not exist yet (a
    symlink to the real one brings the database 'up'), and a password in it: the embedded
    Postgres's own (it takes only password logins), else one a `trust` server ignores."""
    parts = urllib.parse.urlsplit(with_socket_dir(database_url, tmp_path / "pg"))
    if not parts.password:
        parts = parts._replace(netloc="postgres:hunter2@")
    dsn = urllib.parse.urlunsplit(parts)
    env = service_env(
        "control-api",
        tmp_path / "state",
        DATABASE_URL=dsn,
        NATS_URL=nats_url,
        LAUNCHDECK_API_PORT=str(free_port()),
    )
    process = ServiceProcess("control-api", env, tmp_path / "control-api.log")
    yield process
    process.kill()


async def ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_waits_for_postgres_and_stops_on_sigterm(control_api: ServiceProcess) -> None:
    """Postgres not there: one outage_began naming it (URL without the password), then SIGTERM
    ends the process with exit code 0 within seconds."""
    control_api.start()
    began = await control_api.wait_for("outage_began", what="PostgreSQL")
    assert began["url"].startswith("postgresql:///")
    password = urllib.parse.urlsplit(control_api.env["DATABASE_URL"]).password
    assert password
    assert password not in control_api.output
    assert await asyncio.to_thread(control_api.stop, signal.SIGTERM) == 0, control_api.output
    assert [e["event"] for e in control_api.events()][-1] == "service_stopped"


async def test_serves_once_postgres_is_up(
    control_api: ServiceProcess, database_url: str, tmp_path: Path
) -> None:
    """When the database appears the control-api stops waiting (one outage_ended) and serves."""
    control_api.start()
    await control_api.wait_for("outage_began", what="PostgreSQL")
    (tmp_path / "pg").symlink_to(socket_dir_of(database_url))
    await control_api.wait_for("outage_ended", what="PostgreSQL")
    port = control_api.env["LAUNCHDECK_API_PORT"]

    async def answers() -> bool:
        return await ready(f"http://127.0.0.1:{port}/ready")

    assert await eventually("the API to be ready", answers)
    assert await asyncio.to_thread(control_api.stop, signal.SIGTERM) == 0, control_api.output
    events = [e["event"] for e in control_api.events()]
    assert events.count("outage_began") == 1
