"""Cancelled builds, as a worker learns of them: by word, and by mark.

The control-api cancels a build in two writes (docs/nats.md): first its mark in the
`cancellations` KV bucket (key: the build id), then a `BuildCancelRequested` on core NATS
(`ld.control.build.cancel`), which every worker hears. The word is instant but may be lost (core
NATS keeps nothing: a worker that is reconnecting misses it); the mark is durable, so:

- a worker that picks up a cancelled build's job — queued when it was cancelled, or redelivered
  because its worker died — finds the mark before it does anything (`requested`) and drops it;
- a worker running a build hears the word and stops it at once (`on_message`), and, should the
  word never arrive, finds the mark when it next looks: `guard` reads it every `POLL_S` while
  the build runs.

`guard` runs a build's work as a task of its own, so stopping it is cancelling that task: every
wait inside ends where it is, and `run_command`'s clean-up kills the running command's whole
process group (and whatever it left running) before `guard` raises `BuildCancelled`. The handler
then says so in the log and reports `cancelled`. A cancel that arrives after the work finished
changes nothing: the build ended as it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildCancelRequested
from launchdeck.contracts.subjects import KV_CANCELLATIONS
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# How often a running build looks for its mark (a lost word costs at most this much more).
POLL_S = 3.0


class BuildCancelled(Exception):
    """The build was cancelled on request; its processes are gone."""


class Cancellations:
    """The cancel requests this worker knows of, for the builds it runs."""

    def __init__(self, js: JetStreamContext, *, poll_s: float = POLL_S) -> None:
        self._js = js
        self._poll_s = poll_s
        self._bucket: KeyValue | None = None
        self._watched: dict[str, asyncio.Event] = {}

    async def _kv(self) -> KeyValue:
        if self._bucket is None:
            self._bucket = await self._js.key_value(KV_CANCELLATIONS)
        return self._bucket

    async def requested(self, build_id: str) -> BuildCancelRequested | None:
        """The build's cancel mark, or None when it was not cancelled. NATS errors are raised."""
        kv = await self._kv()
        try:
            entry = await kv.get(build_id)
        except KeyNotFoundError:  # also a deleted or purged key
            return None
        try:
            return decode(entry.value or b"", BuildCancelRequested)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # A mark someone wrote by hand: the key says which build, that is enough.
            return BuildCancelRequested(build_id=build_id, project_id="")

    async def on_message(self, msg: Msg) -> None:
        """The core NATS callback of `ld.control.build.cancel`: stop the build if it runs here."""
        try:
            request = decode(msg.data, BuildCancelRequested)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("build_cancel_undecodable", error=str(exc))
            return
        event = self._watched.get(request.build_id)
        if event is not None:
            log.info("build_cancel_received", build_id=request.build_id)
            event.set()

    @contextlib.contextmanager
    def watch(self, build_id: str) -> Iterator[asyncio.Event]:
        """While inside, a cancel word for `build_id` sets the event this yields (enter it
        before reading the mark, so a word arriving in between is not missed)."""
        event = self._watched.get(build_id)
        if event is not None:  # an outer `watch` of the same build owns it
            yield event
            return
        event = self._watched[build_id] = asyncio.Event()
        try:
            yield event
        finally:
            if self._watched.get(build_id) is event:
                del self._watched[build_id]

    async def guard(self, build_id: str, work: Awaitable[T]) -> T:
        """Run `work` until it finishes — its result or its error — or until the build is
        cancelled: then cancel it, wait for it to wind down (its processes killed) and raise
        `BuildCancelled`. Cancelling `guard` itself (a shutdown, the watchdog) cancels `work`
        and waits for it the same way."""
        with self.watch(build_id) as heard:
            task = asyncio.ensure_future(work)
            stop = asyncio.create_task(self._until_cancelled(build_id, heard))
            try:
                await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.wait({task})
                raise
            finally:
                stop.cancel()
                await asyncio.gather(stop, return_exceptions=True)
            if task.done():  # finished first (or at the same time): what happened stands
                return task.result()
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is None:
                return task.result()  # it finished while being stopped
            raise BuildCancelled(build_id)

    async def _until_cancelled(self, build_id: str, heard: asyncio.Event) -> None:
        """Return once the word is heard or the mark is found (looked for every `poll_s`)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), self._poll_s)
            if heard.is_set():
                return
            try:
                if await self.requested(build_id) is not None:
                    log.info("build_cancel_mark_found", build_id=build_id)
                    return
            except Exception as exc:  # NATS away: the next look, or the word, will do
                log.debug("build_cancel_mark_unreadable", build_id=build_id, error=repr(exc))
