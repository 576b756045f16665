"""The skeleton of every service process, written once: settings and logging, NATS (waited for
while it is not up yet) as the service's own user (`libs.nats_access`), JetStream provisioning
(the control-api) or a wait for the streams a worker uses, an optional NATS micro endpoint, a
stop on SIGTERM or Ctrl-C at any moment, drain and disconnect.

A service is its settings and one coroutine, its body::

    async def serve(service: Service[Settings]) -> None:
        worker = Worker(service.js, service.settings)              # start-up
        await service.register("What it does", worker.status)       # `nats micro ls` lists it
        await service.run_until_stopped(asyncio.create_task(consume(...)))

    def main() -> None:
        run_service(SERVICE_GENERATOR, Settings.from_env, serve)

Until the body calls `run_until_stopped` it is starting, and a stop signal cancels it wherever it
waits (for NATS, Postgres, Caddy); from then on the signal sets `service.stop` and the tasks are
cancelled to finish or hand back their work. A setting that does not parse stops the process at
once with the variable's name on stderr (exit code 1, no traceback); so does a failing body (its
traceback logged as `service_failed`), which lets a supervisor restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError
from nats.micro.service import Service as MicroService

from launchdeck.libs import micro
from launchdeck.libs.jetstream import connect, disconnect
from launchdeck.libs.logging import LogSettings, configure, get_logger
from launchdeck.libs.nats_access import access_of
from launchdeck.libs.outage import Outage
from launchdeck.libs.provisioning import StreamsMissing, check_streams, provision
from launchdeck.libs.runner import Lifecycle, run_process, run_until_stopped
from launchdeck.libs.settings import NatsOptions, SettingsError

log = get_logger(__name__)

T = TypeVar("T")


class NatsSettings(Protocol):
    """What the skeleton needs of a service's settings."""

    @property
    def nats_url(self) -> str: ...


SettingsT = TypeVar("SettingsT", bound=NatsSettings)


class Service(Generic[SettingsT]):
    """A running service as its body sees it: settings, the NATS connection and JetStream."""

    def __init__(
        self,
        name: str,
        settings: SettingsT,
        nc: Client,
        js: JetStreamContext,
        lifecycle: Lifecycle,
    ) -> None:
        self.name = name  # the NATS connection and micro-service name, `launchdeck-<service>`
        self.settings = settings
        self.nc = nc
        self.js = js
        self.lifecycle = lifecycle
        self._micro: list[MicroService] = []

    @property
    def stop(self) -> asyncio.Event:
        """Set by SIGTERM/SIGINT."""
        return self.lifecycle.stop

    async def register(self, description: str, status: Callable[[], dict[str, object]]) -> None:
        """Register the NATS micro endpoint (PING/INFO/STATS and `status`) under `self.name`;
        it is stopped when the service stops. Workers do; the control-api has HTTP /health.
        Flushed: once this returns the server holds the subscriptions, so `nats micro ls`
        (from any connection) lists the service at once."""
        self._micro.append(await micro.register(self.nc, self.name, description, status))
        await self.nc.flush()

    async def run_until_stopped(
        self, *tasks: asyncio.Task[None], cancel_tasks: bool = True
    ) -> None:
        """Start-up is over: wait for a stop (or for a task to die), then cancel the tasks and
        wait for them (`libs.runner.run_until_stopped`; `cancel_tasks=False` leaves that to
        their owner)."""
        self.lifecycle.running()
        await run_until_stopped(self.stop, *tasks, cancel_tasks=cancel_tasks)

    async def close_micro(self) -> None:
        """Stop the micro endpoints (best effort: NATS may be away)."""
        while self._micro:
            with contextlib.suppress(Exception):
                await self._micro.pop().stop()


@contextlib.asynccontextmanager
async def open_service(
    name: str,
    settings: SettingsT,
    lifecycle: Lifecycle | None = None,
    nats_options: NatsOptions | None = None,
) -> AsyncIterator[Service[SettingsT]]:
    """Connect to NATS as `name` (waiting while it is not up), set up JetStream, and on the way
    out stop the micro endpoints and drain the connection. `nats_options`: credentials given
    apart from `settings.nats_url` and the replicas (`LAUNCHDECK_NATS_REPLICAS`); none: the
    URL's credentials, replicas chosen from the server.

    One of the platform's services (`libs.nats_access`) takes its replies on its own inbox, and
    only the control-api provisions: a worker waits until the streams it uses exist, as its
    NATS user may not create them. Any other name (a test's) provisions, as every service did
    before per-service users."""
    nats = nats_options or NatsOptions()
    access = access_of(name)
    inbox = {"inbox_prefix": access.inbox_prefix} if access is not None else {}
    nc = await connect(settings.nats_url, name=name, **nats.credentials(), **inbox)
    try:
        js = nc.jetstream()
        if access is None or access.provisions:
            await provision(js, nats.replicas)
        else:
            await wait_for_streams(js, access.streams)
        service = Service(name, settings, nc, js, lifecycle or Lifecycle())
        try:
            yield service
        finally:
            await service.close_micro()
    finally:
        await disconnect(nc)


def run_service(
    name: str,
    settings: Callable[[], SettingsT],
    body: Callable[[Service[SettingsT]], Awaitable[None]],
) -> None:
    """The whole process of service `name` (`launchdeck-<service>`; logs say `<service>`):
    read the log settings, the NATS options and `settings()` (a `SettingsError` exits at once
    with its message), configure logging, then run `body` inside `open_service` until it returns
    or is stopped."""
    short = name.removeprefix("launchdeck-")
    try:
        log_settings = LogSettings.from_env()
        nats_options = NatsOptions.from_env()
        loaded = settings()
    except SettingsError as exc:
        raise SystemExit(f"{short}: {exc}") from None
    configure(short, log_settings)

    async def main(lifecycle: Lifecycle) -> None:
        async with open_service(name, loaded, lifecycle, nats_options) as service:
            await body(service)

    run_process(main)


async def wait_until_up(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    url: str | None = None,
) -> T:
    """`await attempt()` until it does not raise one of `retry_on` (a dependency that is not up
    yet), with one `outage_began` line for the wait (naming `what` and its `url`, which must
    hold no credentials) and one `outage_ended` when it is over. Any other error is raised.
    Cancel it to stop waiting."""
    outage = Outage(what, url=url) if url else Outage(what)
    while True:
        try:
            result = await attempt()
        except retry_on as exc:
            await outage.backoff(exc)
        else:
            outage.over()
            return result


async def wait_for_streams(js: JetStreamContext, streams: Sequence[str]) -> None:
    """Return once every stream of `streams` exists; meanwhile one `outage_began` line (`what`:
    JetStream streams, `error` naming those missing) and one `outage_ended` when they are there.
    A worker started before the control-api (which creates them) waits here; so does one whose
    NATS user is not allowed to ask (a misconfigured server: each try times out, and nats-py
    reports the permissions violation)."""
    await wait_until_up(
        "JetStream streams",
        lambda: check_streams(js, streams),
        retry_on=(
            StreamsMissing,
            TimeoutError,
            nats.errors.NoRespondersError,
            ServiceUnavailableError,
            nats.errors.ConnectionReconnectingError,
        ),
    )
