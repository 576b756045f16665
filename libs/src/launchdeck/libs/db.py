"""asyncpg pool and SQL migrations.

Migrations are `NNNN_name.sql` files applied in order, once, each in its own transaction, and
recorded in `schema_migrations`. An advisory lock makes concurrent start-ups apply them once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_MIGRATION_LOCK = 72_616_001  # arbitrary, constant advisory-lock key for migrations


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def advisory_lock(conn: Any, key: int, *, wait: bool = True) -> AsyncIterator[bool]:
    """Hold the session-level advisory lock `key` on `conn` for the block.

    Yields whether it is held: with `wait=False` another session holding it means False at
    once (the block should then skip its work). Several replicas use this so that one of them
    does a job (migrations, a sweep) at a time.
    """
    if wait:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        held = True
    else:
        held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    try:
        yield held
    finally:
        if held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


def migration_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())
    names = [p.name[:4] for p in files]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two migrations share a number in {directory}")
    return files


async def migrate(conn: Any, directory: Path) -> list[str]:
    """Apply pending migrations from `directory`; return the names applied now."""
    applied_now: list[str] = []
    async with advisory_lock(conn, _MIGRATION_LOCK):
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in migration_files(directory):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied_now.append(path.name)
            log.info("migration_applied", migration=path.name)
    return applied_now
