"""A NATS server of the test's own that can be stopped and started again, as an operator
restarting (or upgrading) NATS would: same port, same JetStream store, and — unless told
otherwise — the platform's users (tests/nats_auth.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from launchdeck.devservers import NatsServer, start_nats
from tests.nats_auth import AUTH_CONFIG, operator_url


@dataclass
class RestartableNats:
    store_dir: Path
    port: int
    log_file: Path
    server: NatsServer | None = None
    auth: bool = True  # the platform's users; False: anyone gets in

    @property
    def plain_url(self) -> str:
        """The server's URL without credentials."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL a test's client uses: as the operator when the server has users."""
        return operator_url(self.plain_url) if self.auth else self.plain_url

    def start(self) -> None:
        assert self.server is None, "already running"
        self.server = start_nats(
            self.store_dir,
            port=self.port,
            log_file=self.log_file,
            config=AUTH_CONFIG if self.auth else None,
        )

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop` or a container runtime sends; waits for the exit."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    # The blocking start/stop off the event loop, so clients on it keep running meanwhile.
    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)
