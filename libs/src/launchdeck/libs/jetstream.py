"""NATS connection and JetStream provisioning (SPEC §1.1), idempotent, run at every start-up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from launchdeck.contracts import subjects as s
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage
from launchdeck.libs.settings import public_url

log = get_logger(__name__)

DAY = 24 * 3600.0
# Commands are deduplicated by Nats-Msg-Id within this window (the outbox retries inside it).
DUPLICATE_WINDOW_S = 2 * 3600.0


def stream_configs(
    *, logs_max_age_s: float = 7 * DAY, logs_max_bytes: int = 2 * 1024**3
) -> list[StreamConfig]:
    def work_queue(name: str, *subjects: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=list(subjects),
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        )

    return [
        work_queue(s.STREAM_BUILDS, s.SUBJECT_BUILD_JOBS),
        work_queue(s.STREAM_DEPLOYS, s.SUBJECT_DEPLOY_JOBS, s.SUBJECT_UNDEPLOY_JOBS),
        work_queue(s.STREAM_GENERATIONS, s.SUBJECT_GENERATION_JOBS),
        StreamConfig(
            name=s.STREAM_EVENTS,
            subjects=[s.SUBJECT_EVENTS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=s.STREAM_LOGS,
            subjects=[s.SUBJECT_LOGS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=logs_max_age_s,
            max_bytes=logs_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=120.0,
        ),
    ]


# How a connection to a server that goes (or still is) away fails; the disconnect is logged.
_CONNECTION_ERRORS = (OSError, nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError)


def servers(url: str) -> list[str]:
    """The servers of a `NATS_URL`: one URL, or several comma-separated (a cluster)."""
    return [server.strip() for server in url.split(",") if server.strip()]


def public_nats_url(url: str) -> str:
    """`url` (every server of it) without credentials, for logs."""
    return ",".join(public_url(server) for server in servers(url))


async def connect(url: str, name: str, **kwargs: Any) -> Client:
    """Connect with reconnects forever; the connection name shows in `nats server report`.

    A server that is not there yet at start is waited for, as nats-py retries the first connect
    too (every `reconnect_time_wait`): one `outage_began` warning (what: NATS, url: without
    credentials) says the service is waiting, one `outage_ended` line that it got through. Cancel
    the call to give up waiting; the half-made client is closed.

    A lost connection is logged once (warning) and its return once (info); the connection errors
    around it (the EOF, each failed reconnect attempt: nats-py's default logs every one at error
    level, with a traceback) only at debug level.
    """
    nc = Client()
    waiting = Outage("NATS", url=public_nats_url(url))
    connected_once = False

    async def disconnected() -> None:
        if not nc.is_closed:  # closing (drain at shutdown) calls this too
            log.warning("nats_disconnected", connection=name)

    async def reconnected() -> None:
        server = nc.connected_url
        log.info("nats_reconnected", connection=name, server=server.netloc if server else None)

    async def error(exc: Exception) -> None:
        if not connected_once:  # a failed try of the first connect: the wait is logged once
            waiting.failed(exc)
            log.debug("nats_connection_error", connection=name, error=repr(exc))
        elif isinstance(exc, _CONNECTION_ERRORS):
            log.debug("nats_connection_error", connection=name, error=repr(exc))
        else:
            log.warning("nats_error", connection=name, error=repr(exc))

    options: dict[str, Any] = {
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        **kwargs,
    }
    pool = servers(url)
    try:
        await nc.connect(pool if len(pool) > 1 else url, name=name, **options)
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    connected_once = True
    waiting.over()
    return nc


async def disconnect(nc: Client) -> None:
    """Drain `nc` (what is pending goes out, then it closes); while it is reconnecting, when
    nats-py refuses to drain, just close it: shutting down must not wait for NATS."""
    if nc.is_closed:
        return
    if not nc.is_connected:
        await nc.close()
        return
    try:
        # What was published so far reaches the server first, whatever drain does next.
        await nc.flush(timeout=5)
        await nc.drain()
    except (nats.errors.ConnectionReconnectingError, nats.errors.FlushTimeoutError):
        await nc.close()


def client_of(js: JetStreamContext) -> Client:
    """The connection under `js` (nats-py has no public accessor for it)."""
    nc: Client = js._nc
    return nc


async def wait_connected(nc: Client, *, poll_s: float = 0.1) -> None:
    """Return once `nc` is connected (at once if it is); raise `ConnectionClosedError` if it
    is closed for good. The status is a local flag, so polling it costs no traffic."""
    while not nc.is_connected:
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        await asyncio.sleep(poll_s)


async def provision(js: JetStreamContext) -> None:
    """Create or update the streams, object stores and KV buckets the platform uses."""
    for config in stream_configs():
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with a different config: bring it to ours (subjects, limits).
            await js.update_stream(config)
    for bucket in (s.OBJECT_STORE_ARTIFACTS, s.OBJECT_STORE_EXPORTS):
        try:
            await js.object_store(bucket)
        except NotFoundError:
            await js.create_object_store(
                bucket, config=ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE)
            )
    try:
        await js.key_value(s.KV_LEASES)
    except NotFoundError:
        await js.create_key_value(
            config=KeyValueConfig(bucket=s.KV_LEASES, ttl=30.0, storage=StorageType.FILE)
        )
    log.debug("jetstream_provisioned")
