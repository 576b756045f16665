"""Publishing to JetStream with a `Nats-Msg-Id`, retried while the failure looks transient.

The stream drops a second message with the same id inside its duplicate window, so a publish
retried after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError

PUBLISH_TIMEOUT_S = 5.0
PUBLISH_ATTEMPTS = 5
BACKOFF_S = 0.2


async def publish_once_by_id(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    attempts: int = PUBLISH_ATTEMPTS,
) -> None:
    """Publish `payload` and wait for the stream's ack; retries timeouts and reconnects."""
    delay = BACKOFF_S
    for attempt in range(1, attempts + 1):
        try:
            await js.publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": msg_id}
            )
            return
        except BadRequestError:
            raise  # the stream refused the message itself: retrying cannot help
        except (nats.errors.Error, TimeoutError):
            if attempt == attempts:
                raise
        await asyncio.sleep(delay)
        delay *= 2
