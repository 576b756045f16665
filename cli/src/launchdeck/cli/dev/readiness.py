"""When `launchdeck dev` may say the platform is ready (`"ready": true` in dev.json, the banner).

Ready means every service answers, not merely that its process runs: the control-api's `/ready`
(its Postgres and NATS reachable), the deploy-engine's `/health`, and a NATS micro-service PING
answered by the build-worker, the deploy-engine and the generator (each registers once it
consumes its jobs). So a script that waits for `"ready": true` can call the API at once, and the
build it triggers is picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from types import TracebackType

import aiohttp
import nats
import nats.errors
from nats.aio.client import Client

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.contracts import subjects as s
from launchdeck.libs.jetstream import servers

WORKERS = (s.SERVICE_BUILD_WORKER, s.SERVICE_DEPLOY_ENGINE, s.SERVICE_GENERATOR)
POLL_INTERVAL_S = 0.5
CHECK_TIMEOUT_S = 2.0


async def _ignore(*_args: object) -> None:
    """nats-py callbacks: start-up polling reports what is missing itself, not every error."""


class ReadinessProbe:
    """Asks each service whether it answers; use as `async with ReadinessProbe(...)`."""

    def __init__(
        self,
        client: LaunchdeckClient,
        deploy_engine_url: str,
        nats_url: str,
        nats_credentials: Mapping[str, str] | None = None,
    ) -> None:
        """`nats_credentials`: nats-py's `user`/`password` options (the operator's login to the
        embedded NATS); none: those `nats_url` holds, if any."""
        self.client = client
        self.deploy_engine_url = deploy_engine_url.rstrip("/")
        self.nats_url = nats_url
        self.nats_credentials = dict(nats_credentials or {})
        self._nc: Client | None = None

    async def __aenter__(self) -> ReadinessProbe:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    async def waiting_for(self) -> list[str]:
        """What does not answer yet, in words; empty once everything is ready."""
        missing = []
        if not await self.client.is_ready():
            missing.append("control-api (/ready)")
        if not await self._http_ok(self.deploy_engine_url + "/health"):
            missing.append("deploy-engine (/health)")
        missing += [f"{name} (NATS micro PING)" for name in await self._unanswered_pings()]
        return missing

    async def _http_ok(self, url: str) -> bool:
        try:
            async with self.client.session.get(
                url, timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _unanswered_pings(self) -> list[str]:
        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    servers(self.nats_url),  # one URL, or a cluster's comma-separated
                    name="launchdeck-dev",
                    connect_timeout=CHECK_TIMEOUT_S,
                    allow_reconnect=False,
                    error_cb=_ignore,
                    disconnected_cb=_ignore,
                    closed_cb=_ignore,
                    **self.nats_credentials,
                )
            except (OSError, nats.errors.Error):
                return list(WORKERS)
        nc = self._nc
        unanswered = []
        for name in WORKERS:
            try:
                await nc.request(f"$SRV.PING.{name}", b"", timeout=CHECK_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError):
                unanswered.append(name)
                if nc.is_closed:  # NATS went away: reconnect on the next round
                    self._nc = None
        return unanswered


async def wait_until_ready(
    probe: ReadinessProbe, stop: asyncio.Event, timeout_s: float
) -> list[str]:
    """Ask every `POLL_INTERVAL_S` until everything answers (return `[]`), `stop` is set or
    `timeout_s` passed (return what still did not answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = await probe.waiting_for()
        if not missing or stop.is_set() or time.monotonic() >= deadline:
            return missing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=POLL_INTERVAL_S)
