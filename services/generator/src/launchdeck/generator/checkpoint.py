"""Where a generation job's state lives, as the generator sees it: the `Checkpoint` of one job.

Postgres is the control-api's alone, so the generator asks it for everything over core NATS
request/reply (`ld.rpc.generation.*`, answered by the control-api's generation RPC consumer):
take the job (`start`), fetch pending items (`claim`), store finished items (`settle`), look
answers up in the response cache (`cache_lookup`) and end the job (`finish`). Every item row is
the checkpoint: a resumed job claims only what is still pending, so nothing done is called again.

`NatsCheckpoint` retries a request nobody answered (the control-api restarting, NATS away) with
backoff for as long as it takes — inside `Delivery.working()`, so the job's watchdog does not take
the wait for a stall — until the job is cancelled (`give_up` set: its row already says so, the
results of calls in flight are abandoned) or the process stops (the task is cancelled). An
answer carrying `error` raises `CheckpointError` (a bug or a refused request: the attempt fails
and is redelivered).

Cache lookups are coalesced: the lookups of concurrent items arriving within `COALESCE_S` go
as one request of at most `CACHE_BATCH` fingerprints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    CachedAnswer,
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationClaimReply,
    GenerationClaimRequest,
    GenerationFinishReply,
    GenerationFinishRequest,
    GenerationItemResult,
    GenerationSettleReply,
    GenerationSettleRequest,
    GenerationStartReply,
    GenerationStartRequest,
    Message,
)
from launchdeck.contracts.statuses import GenerationStatus
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage

log = get_logger(__name__)

R = TypeVar("R", bound=Message)

REQUEST_TIMEOUT_S = 10.0  # one try; a settle of a full batch is one transaction
COALESCE_S = 0.003
CACHE_BATCH = 256

# What "nobody answered" looks like to nats-py (as in libs.env_client).
UNANSWERED: tuple[type[Exception], ...] = (
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    TimeoutError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
)


class CheckpointError(Exception):
    """The control-api answered with an error, or not at all before the job was cancelled."""


class CheckpointUnavailable(CheckpointError):
    """Nobody answered, and the job was cancelled meanwhile: stop waiting."""


class Checkpoint(Protocol):
    """One job's state, kept elsewhere (the control-api; a dict in the executor's tests)."""

    async def start(self, attempt: int) -> GenerationStartReply: ...

    async def claim(self, after_index: int, limit: int) -> GenerationClaimReply: ...

    async def settle(self, results: Sequence[GenerationItemResult]) -> GenerationSettleReply: ...

    async def cache_lookup(self, fingerprint: str) -> CachedAnswer | None: ...

    async def finish(
        self, status: GenerationStatus, error: str | None
    ) -> GenerationFinishReply: ...


Working = Callable[[], AbstractContextManager[None]]


@contextlib.contextmanager
def _not_watched() -> Iterator[None]:
    yield


class NatsCheckpoint:
    """The checkpoint of job `job_id`, kept by the control-api (see the module docstring)."""

    def __init__(
        self,
        nc: Client,
        job_id: str,
        *,
        give_up: asyncio.Event | None = None,
        working: Working = _not_watched,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._nc = nc
        self.job_id = job_id
        self._give_up = give_up or asyncio.Event()
        self._working = working
        self._timeout_s = timeout_s
        self._outage = Outage("control-api generation RPC", job_id=job_id)
        self._lookups: dict[str, list[asyncio.Future[CachedAnswer | None]]] = {}
        self._flush_soon: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def _request(self, subject: str, request: Message, reply_type: type[R]) -> R:
        payload = encode(request)
        with self._working():
            while True:
                try:
                    message = await self._nc.request(subject, payload, timeout=self._timeout_s)
                except UNANSWERED as exc:
                    if self._give_up.is_set():
                        raise CheckpointUnavailable(
                            f"{subject}: no answer, and the job was cancelled"
                        ) from exc
                    await self._outage.backoff(exc)
                    continue
                self._outage.over()
                try:
                    return decode(message.data, reply_type)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise CheckpointError(
                        f"{subject}: an answer that does not decode ({exc})"
                    ) from None

    async def start(self, attempt: int) -> GenerationStartReply:
        request = GenerationStartRequest(job_id=self.job_id, attempt=attempt)
        return await self._request(s.SUBJECT_GENERATION_START, request, GenerationStartReply)

    async def claim(self, after_index: int, limit: int) -> GenerationClaimReply:
        request = GenerationClaimRequest(job_id=self.job_id, after_index=after_index, limit=limit)
        reply = await self._request(s.SUBJECT_GENERATION_CLAIM, request, GenerationClaimReply)
        if reply.error is not None:
            raise CheckpointError(f"claim refused: {reply.error}")
        return reply

    async def settle(self, results: Sequence[GenerationItemResult]) -> GenerationSettleReply:
        request = GenerationSettleRequest(job_id=self.job_id, results=list(results))
        reply = await self._request(s.SUBJECT_GENERATION_SETTLE, request, GenerationSettleReply)
        if reply.error is not None:
            raise CheckpointError(f"settle refused: {reply.error}")
        return reply

    async def finish(self, status: GenerationStatus, error: str | None) -> GenerationFinishReply:
        request = GenerationFinishRequest(job_id=self.job_id, status=status, error=error)
        reply = await self._request(s.SUBJECT_GENERATION_FINISH, request, GenerationFinishReply)
        if reply.error is not None:
            raise CheckpointError(f"finish refused: {reply.error}")
        return reply

    # --- the response cache, coalesced -----------------------------------------------------

    async def cache_lookup(self, fingerprint: str) -> CachedAnswer | None:
        """The stored answer of `fingerprint`, or None. A lookup that fails is a miss: the
        cache saves money, it never fails an item."""
        future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(fingerprint, []).append(future)
        if len(self._lookups) >= CACHE_BATCH:
            self._send_lookups()
        elif self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_later(COALESCE_S, self._send_lookups)
        return await future

    def _send_lookups(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if not self._lookups:
            return
        batch, self._lookups = self._lookups, {}
        task = asyncio.create_task(self._lookup(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _lookup(self, batch: dict[str, list[asyncio.Future[CachedAnswer | None]]]) -> None:
        hits: dict[str, CachedAnswer] = {}
        try:
            request = GenerationCacheRequest(fingerprints=list(batch))
            reply = await self._request(s.SUBJECT_GENERATION_CACHE, request, GenerationCacheReply)
            if reply.error is not None:
                log.warning(
                    "generation_cache_lookup_refused", job_id=self.job_id, error=reply.error
                )
            else:
                hits = reply.hits
        except CheckpointError as exc:
            log.warning("generation_cache_lookup_failed", job_id=self.job_id, error=str(exc))
        finally:
            for fingerprint, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(hits.get(fingerprint))
