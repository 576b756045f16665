"""Publishing to JetStream with a `Nats-Msg-Id`, retried while the failure looks transient.

The stream drops a second message with the same id inside its duplicate window, so a publish
retried after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError

from launchdeck.libs.retry import retrying

PUBLISH_TIMEOUT_S = 5.0
PUBLISH_ATTEMPTS = 5
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 2.0


async def publish_once_by_id(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    attempts: int = PUBLISH_ATTEMPTS,
) -> None:
    """Publish `payload` and wait for the stream's ack; retries timeouts and reconnects."""
    async for attempt in retrying(
        attempts=attempts,
        first_delay_s=FIRST_DELAY_S,
        max_delay_s=MAX_DELAY_S,
        retry_on=(nats.errors.Error, TimeoutError),
        give_up_on=(BadRequestError,),  # the stream refused the message itself: retrying can't help
        log_event="publish_retrying",
    ):
        with attempt:
            await js.publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": msg_id}
            )
