"""Releasing a pool connection: what must not outlive it (an open transaction, an advisory lock
whose block never unlocked) is cleaned up; an ordinary release costs no extra round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from launchdeck.libs import db

KEY = 72_616_999


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def test_an_abandoned_advisory_lock_is_released_with_the_connection(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """A block left without its unlock (a task cancelled at the worst moment) does not keep the
    lock once its connection is back in the pool: another session can take it."""
    other = await asyncpg.connect(database_url)
    try:
        async with pool.acquire() as conn:
            held = db.advisory_lock(conn, KEY)
            assert await held.__aenter__()  # never exited
            assert not await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
    finally:
        await other.close()


async def test_a_normal_lock_block_and_an_open_transaction_leave_nothing_behind(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """After an `advisory_lock` block the lock is free; a transaction left open is rolled back."""
    async with pool.acquire() as conn, db.advisory_lock(conn, KEY) as held:
        assert held
    other = await asyncpg.connect(database_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
    finally:
        await other.close()
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS scratch (n int)")
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("INSERT INTO scratch VALUES (1)")
    async with pool.acquire() as conn:  # the same (only) connection
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM scratch") == 0


async def test_an_ordinary_release_sends_no_reset_query(pool: asyncpg.Pool) -> None:
    """The full session reset (a round trip per release) is skipped when nothing needs it."""
    async with pool.acquire() as conn:
        before = conn._protocol.queries_count  # the connection's count of commands sent
    async with pool.acquire() as conn:
        assert conn._protocol.queries_count == before
