"""Core NATS subjects served by the control-api's queue group: the transport every request/reply
server of the control-api shares (`ld.rpc.env`, `ld.rpc.generation.*`, the max-deliveries
advisories).

Every replica subscribes in the queue group `control-api`, so one of them gets each message;
each message is handled in a task of its own (a slow one — a database wait, a retry — holds up
no other); on shutdown the subscriptions go first, then handlers already running get
`STOP_WAIT_S` to finish before they are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from launchdeck.contracts.subjects import QUEUE_CONTROL_API
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# How long shutdown lets messages already being handled finish.
STOP_WAIT_S = 5.0

MsgHandler = Callable[[Msg], Coroutine[Any, Any, None]]


class QueueGroupServer:
    """Serves `handlers` (subject → handler) until cancelled (`run`)."""

    def __init__(
        self, nc: Client, handlers: Sequence[tuple[str, MsgHandler]], *, log_event: str
    ) -> None:
        self._nc = nc
        self._handlers = handlers
        self._log_event = log_event
        self.subs: list[Subscription] = []
        self.handling: set[asyncio.Task[None]] = set()
        # Set once the server has every subscription: a message sent after it is handled.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        try:
            for subject, handle in self._handlers:
                self.subs.append(
                    await self._nc.subscribe(
                        subject, queue=QUEUE_CONTROL_API, cb=self._in_a_task(handle)
                    )
                )
            await self._nc.flush()
            self.ready.set()
            log.info(self._log_event, subjects=[subject for subject, _ in self._handlers])
            await asyncio.Future()  # until cancelled
        finally:
            for sub in self.subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            handling = list(self.handling)
            if handling:
                await asyncio.wait(handling, timeout=STOP_WAIT_S)
            for task in handling:
                task.cancel()
            await asyncio.gather(*handling, return_exceptions=True)

    def _in_a_task(self, handle: MsgHandler) -> MsgHandler:
        async def on_message(msg: Msg) -> None:
            task: asyncio.Task[None] = asyncio.create_task(handle(msg))
            self.handling.add(task)
            task.add_done_callback(self.handling.discard)

        return on_message
