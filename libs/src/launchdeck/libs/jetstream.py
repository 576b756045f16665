"""NATS connection: one server or a cluster, credentials in the URL or apart, reconnecting for
ever. Provisioning (streams, buckets, replicas) is `libs.provisioning`, re-exported here."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.libs.cancellation import pause
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage
from launchdeck.libs.provisioning import DAY as DAY
from launchdeck.libs.provisioning import DUPLICATE_WINDOW_S as DUPLICATE_WINDOW_S
from launchdeck.libs.provisioning import provision as provision
from launchdeck.libs.provisioning import stream_configs as stream_configs
from launchdeck.libs.settings import public_url

log = get_logger(__name__)

# How a connection to a server that goes (or still is) away fails; the disconnect is logged.
_CONNECTION_ERRORS = (OSError, nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError)


def servers(url: str) -> list[str]:
    """The servers of a `NATS_URL`: one URL, or several comma-separated (a cluster)."""
    return [server.strip() for server in url.split(",") if server.strip()]


def public_nats_url(url: str) -> str:
    """`url` (every server of it) without credentials, for logs."""
    return ",".join(public_url(server) for server in servers(url))


_CREDENTIAL_OPTIONS = ("user", "password", "token")


def split_credentials(pool: list[str]) -> tuple[list[str], dict[str, str]]:
    """The servers of `pool` without user info, and nats-py's connect options for the
    credentials they held (`user` + `password`, or a lone user part: `token`).

    nats-py sends a URL's credentials to that server only, not to the nodes it learns from the
    cluster (which it then cannot use: a service whose listed node died would never get in
    elsewhere), and it does not undo percent-encoding. Given as options, they go to every node.
    Servers holding different credentials are left as they are, each keeping its own.
    """
    parts = [urlsplit(server if "://" in server else f"nats://{server}") for server in pool]
    held = {(p.username, p.password) for p in parts if p.username is not None}
    if len(held) != 1:
        return pool, {}
    user, password = held.pop()
    assert user is not None
    plain = [
        urlunsplit(p._replace(netloc=p.netloc.rpartition("@")[2])) if p.username else server
        for p, server in zip(parts, pool, strict=True)
    ]
    if password is None:
        return plain, {"token": unquote(user)}
    return plain, {"user": unquote(user), "password": unquote(password)}


async def connect(url: str, name: str, **kwargs: Any) -> Client:
    """Connect with reconnects forever; the connection name shows in `nats server report`.

    `url` is a `NATS_URL`: one server or several comma-separated, with or without credentials
    (`split_credentials`); `kwargs` are nats-py's options (`user`/`password`/`token` given there
    win over the URL's).

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
        where = f"{server.hostname}:{server.port}" if server else None  # never the user info
        log.info("nats_reconnected", connection=name, server=where)

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
    if not any(options.get(key) for key in _CREDENTIAL_OPTIONS):
        pool, credentials = split_credentials(pool)
        options.update(credentials)
    try:
        await nc.connect(pool, name=name, **options)
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
        await pause(poll_s)
