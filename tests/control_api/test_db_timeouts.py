"""Every wait for PostgreSQL is bounded (LAUNCHDECK_DB_*_TIMEOUT_S): a pool whose connections are
all busy, or a database that is not there, is an error within the limit — which the API turns
into a 503 — never a hang."""

from __future__ import annotations

import time

import pytest

from launchdeck.control_api.settings import Settings
from launchdeck.libs import db
from launchdeck.libs.db import DatabaseUnavailable, PoolTimeouts
from launchdeck.libs.settings import SettingsError
from tests.control_api.support import make_settings


def test_timeouts_come_from_the_environment(database_url: str, nats_url: str) -> None:
    """The three limits have defaults, are read from their variables, and must be above 0."""
    assert make_settings(database_url, nats_url).db_timeouts == PoolTimeouts()
    settings: Settings = make_settings(
        database_url,
        nats_url,
        LAUNCHDECK_DB_CONNECT_TIMEOUT_S="1.5",
        LAUNCHDECK_DB_ACQUIRE_TIMEOUT_S="2",
        LAUNCHDECK_DB_COMMAND_TIMEOUT_S="7",
    )
    assert settings.db_timeouts == PoolTimeouts(connect_s=1.5, acquire_s=2.0, command_s=7.0)
    with pytest.raises(SettingsError, match="LAUNCHDECK_DB_ACQUIRE_TIMEOUT_S"):
        make_settings(database_url, nats_url, LAUNCHDECK_DB_ACQUIRE_TIMEOUT_S="0")


async def test_a_busy_pool_and_a_slow_command_time_out(database_url: str) -> None:
    """With its one connection held, `acquire` (and `pool.fetchval`) fails after the acquire
    limit; a command running past the command limit is abandoned."""
    limits = PoolTimeouts(connect_s=2.0, acquire_s=0.3, command_s=0.5)
    pool = await db.create_pool(database_url, min_size=1, max_size=1, timeouts=limits)
    try:
        async with pool.acquire() as held:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await pool.fetchval("SELECT 1")
            assert time.monotonic() - started < 2
            with pytest.raises(TimeoutError):
                await held.execute("SELECT pg_sleep(5)")
        assert await pool.fetchval("SELECT 1") == 1  # the pool is fine afterwards
    finally:
        await pool.close()


async def test_no_database_there_is_database_unavailable(tmp_path: object) -> None:
    """Connecting where no server listens (a unix socket that is gone: FileNotFoundError) is
    reported as DatabaseUnavailable, a ConnectionError the API answers with 503."""
    with pytest.raises(DatabaseUnavailable):
        await db.create_pool(f"postgresql://postgres:x@/postgres?host={tmp_path}")
