"""Publishing on a job's path: with a `Nats-Msg-Id`, retried through an outage until the job's
deadline.

A job (a build, a deploy) must neither hang on NATS nor give up on it after a few seconds: a
single server restarting, or a cluster electing a stream leader, takes seconds to minutes. So every
publish a job makes is retried for as long as the job's own deadline allows, and then fails with
`NatsUnavailable`, a readable reason the job turns into a failed (and redelivered) attempt:

- while the connection is down, it waits for it (`wait_connected`) instead of publishing into
  nats-py's reconnect buffer, where a request would only time out;
- while connected, errors that mean "not now" (`TRANSIENT_ERRORS`: no reply, no responders, 503,
  and any other NATS error) are retried with backoff; the stream refusing the message itself
  (400), a missing stream or object (404) and a connection closed for good are raised at once;
- each outage is logged once (`libs.outage`), not once per try.

The stream drops a second message with the same id inside its duplicate window, so a publish
retried after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from launchdeck.libs.jetstream import client_of, wait_connected
from launchdeck.libs.jobs import TRANSIENT_ERRORS
from launchdeck.libs.outage import Outage, describe_error

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 5.0  # one try's wait for the stream's ack
MIN_TRY_TIMEOUT_S = 1.0  # a try near the deadline still gets this long

ExceptionTypes = tuple[type[BaseException], ...]

# Retried until the deadline: everything NATS raises for "not now".
RETRY_ON: ExceptionTypes = (*TRANSIENT_ERRORS, nats.errors.Error)
# Raised at once: retrying cannot help (refused, missing, or the connection closed for good).
GIVE_UP_ON: ExceptionTypes = (BadRequestError, NotFoundError, nats.errors.ConnectionClosedError)


class NatsUnavailable(RuntimeError):
    """NATS did not take something before the job's deadline: an infrastructure failure that
    fails the attempt (and is retried by redelivery), never the user's build or deploy."""

    def __init__(self, what: str, waited_s: float, last_error: str) -> None:
        self.what = what
        self.waited_s = waited_s
        self.last_error = last_error
        super().__init__(
            f"NATS was unavailable for {waited_s:.0f}s ({last_error}) and the deadline passed: "
            f"{what} was not stored"
        )


async def until_deadline(
    operation: Callable[[float], Awaitable[T]],
    *,
    js: JetStreamContext,
    deadline: float,
    what: str,
    outage: Outage | None = None,
    retry_on: ExceptionTypes = RETRY_ON,
    give_up_on: ExceptionTypes = GIVE_UP_ON,
) -> T:
    """`await operation(timeout_s)` until it succeeds; through an outage until `deadline` (a
    `time.monotonic()` value), then raise `NatsUnavailable` naming `what`.

    While connected, one try is made even past the deadline (a job reporting its end at its time
    limit still gets its say); each try gets `PUBLISH_TIMEOUT_S`, less near the deadline. Pass
    the caller's own `outage` to share one outage log line (and its start time) across calls;
    `retry_on` and `give_up_on` (which wins) widen or narrow what counts as "not now".
    """
    nc = client_of(js)
    outage = outage or Outage("nats", operation=what)
    started = time.monotonic()
    last: BaseException | str = "disconnected"

    def gave_up() -> NatsUnavailable:
        since = outage.began_at if outage.began_at is not None else started
        return NatsUnavailable(what, time.monotonic() - since, describe_error(last))

    while True:
        if not nc.is_connected:
            # Publishing now would only fill the reconnect buffer and time out: wait instead.
            last = "disconnected"
            outage.failed(last)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise gave_up()
            try:
                await asyncio.wait_for(wait_connected(nc), remaining)
            except TimeoutError:
                raise gave_up() from None
            continue
        remaining = deadline - time.monotonic()
        try:
            result = await operation(max(MIN_TRY_TIMEOUT_S, min(PUBLISH_TIMEOUT_S, remaining)))
        except give_up_on:
            raise
        except retry_on as exc:
            last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise gave_up() from exc
            await outage.backoff(exc, max_wait_s=remaining)
        else:
            outage.over()
            return result


async def publish_once_by_id(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    deadline: float,
    what: str | None = None,
    outage: Outage | None = None,
) -> None:
    """Publish `payload` and wait for the stream's ack, retrying through an outage until
    `deadline` (`time.monotonic()`); raises `NatsUnavailable` after it, `BadRequestError` if the
    stream refuses the message."""

    async def publish(timeout_s: float) -> None:
        await js.publish(subject, payload, timeout=timeout_s, headers={"Nats-Msg-Id": msg_id})

    await until_deadline(
        publish, js=js, deadline=deadline, what=what or f"a message on {subject}", outage=outage
    )
