"""The embedded Postgres of `launchdeck dev` and the tests takes only password logins: whatever
reaches its socket — a build running as the same OS user included — needs the password."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from launchdeck.devservers import start_postgres
from launchdeck.devservers.postgres import with_password


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory of the test's own (the test stops the servers it starts)."""
    return tmp_path / "pg" / "data"


async def login(dsn: str) -> str:
    """ "ok", or the error of logging in with `dsn`."""
    try:
        conn = await asyncpg.connect(dsn)
    except (asyncpg.PostgresError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return "ok"


async def test_only_the_password_gets_in_and_a_lost_one_is_replaced(data_dir: Path) -> None:
    """With a password the DSN carries it and works; no password, or a wrong one, is refused
    (`scram-sha-256` on the socket, no `trust` line left). A later start with another password
    (the file holding the first was lost) makes that one the password, and the old one fails."""
    server = await asyncio.to_thread(start_postgres, data_dir, "ld-first")
    try:
        assert await login(server.dsn) == "ok"
        assert "ld-first" not in repr(server)
        refused = await login(with_password(server.dsn, ""))
        assert "password authentication failed" in refused
        assert "password authentication failed" in await login(with_password(server.dsn, "x"))
        hba = (data_dir / "pg_hba.conf").read_text()
        assert "trust" not in hba
        assert "scram-sha-256" in hba
    finally:
        await asyncio.to_thread(server.stop)

    again = await asyncio.to_thread(start_postgres, data_dir, "ld-second")
    try:
        assert await login(again.dsn) == "ok"
        assert "password authentication failed" in await login(with_password(again.dsn, "ld-first"))
        assert "trust" not in (data_dir / "pg_hba.conf").read_text()
    finally:
        await asyncio.to_thread(again.stop)
