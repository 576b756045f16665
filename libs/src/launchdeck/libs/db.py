"""asyncpg pool and SQL migrations.

Migrations are `NNNN_name.sql` files applied in order, once, each in its own transaction, and
recorded in `schema_migrations`. An advisory lock makes concurrent start-ups apply them once.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_MIGRATION_LOCK = 72_616_001  # arbitrary, constant advisory-lock key for migrations


# Backends (server pids) of pool connections that may still hold a session advisory lock: an
# `advisory_lock` block whose unlock did not complete. Only these get asyncpg's full reset on
# release (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), a round trip
# to Postgres per release that made up a third of a simple API read's cost. Every other release
# gets asyncpg's own cleanup (an open transaction rolled back, listeners dropped): nothing of ours
# leaves session state behind otherwise (no session SETs, cursors live in transactions, the
# outbox's LISTEN connection unlistens before its release).
_locked_backends: set[int] = set()


async def _reset_connection(conn: asyncpg.Connection) -> None:
    pid = conn.get_server_pid()
    if pid in _locked_backends:
        _locked_backends.discard(pid)
        await conn.execute(conn.get_reset_query())


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class _OneLineFloorWarnings(logging.Filter):
    """asyncpg's pool logs a full traceback each time it fails to reopen its minimum of
    connections during an outage (with backoff, up to a minute apart): keep the warning, on one
    line with its error — the outage itself is reported by whoever needed the database."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineFloorWarnings())


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL cannot be reached now (refused, its socket gone, no answer in time): an
    outage to wait out, whatever the socket layer called it (a missing unix socket is a
    FileNotFoundError, which says nothing about a database)."""


# What using the database raises while PostgreSQL is away (an outage to wait out, not a bug):
# unreachable or timed out (OSError: DatabaseUnavailable, TimeoutError), a session lost, a
# server starting or shutting down.
POSTGRES_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


@dataclass(frozen=True)
class PoolTimeouts:
    """Bounds on every wait for PostgreSQL, so an outage is an error within seconds (a 503 for
    the API, a retry for a background loop) rather than a hang: opening a connection, waiting
    for a free one from the pool, and one command."""

    connect_s: float = 5.0
    acquire_s: float = 10.0
    command_s: float = 30.0


class _Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg has no type hints
    """A pool whose `acquire` (also behind `pool.fetch`, `pool.execute`…) has a default timeout."""

    acquire_timeout_s: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(*args, **kwargs)
    except OSError as exc:  # also TimeoutError; refused, reset, no such socket
        raise DatabaseUnavailable(f"PostgreSQL unreachable: {exc or type(exc).__name__}") from exc


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, timeouts: PoolTimeouts | None = None
) -> asyncpg.Pool:
    limits = timeouts or PoolTimeouts()
    pool = _Pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        connect=_connect,
        init=_init_connection,
        reset=_reset_connection,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=limits.connect_s,
        command_timeout=limits.command_s,
    )
    pool.acquire_timeout_s = limits.acquire_s
    await pool
    return pool


@contextlib.asynccontextmanager
async def advisory_lock(conn: Any, key: int, *, wait: bool = True) -> AsyncIterator[bool]:
    """Hold the session-level advisory lock `key` on `conn` for the block.

    Yields whether it is held: with `wait=False` another session holding it means False at
    once (the block should then skip its work). Several replicas use this so that one of them
    does a job (migrations, a sweep) at a time.
    """
    pid = conn.get_server_pid()
    # Until unlocked for sure (a failure or cancellation midway leaves it: the pool's release
    # then resets the session, see `_reset_connection`).
    _locked_backends.add(pid)
    if wait:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        held = True
    else:
        held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    if not held:
        _locked_backends.discard(pid)
    try:
        yield held
    finally:
        if held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
            _locked_backends.discard(pid)


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
