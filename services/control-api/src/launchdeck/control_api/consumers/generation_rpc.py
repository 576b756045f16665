"""Serving `ld.rpc.generation.*`: the generator's checkpoint requests (start, claim, settle,
cache, finish), answered from Postgres by `domain.generation_checkpoint`.

The transport half only: decode, know the asker by its reply inbox (`asker_of`, as for
`ld.rpc.env`: only the generator's NATS user may subscribe to `_INBOX.generator.>`), hand the
request to the domain, answer. Every control-api replica subscribes in the queue group
`control-api`: one of them answers each request, each in its own task. A bad request, an unknown
job or another asker is answered with `error`; a request that cannot be answered now (Postgres
away, a deadlock) gets no answer, so the generator's timeout and retry handle it like a
control-api that is restarting — safe, since every request here is idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationClaimReply,
    GenerationClaimRequest,
    GenerationFinishReply,
    GenerationFinishRequest,
    GenerationSettleReply,
    GenerationSettleRequest,
    GenerationStartReply,
    GenerationStartRequest,
)
from launchdeck.contracts.subjects import (
    SUBJECT_GENERATION_CACHE,
    SUBJECT_GENERATION_CLAIM,
    SUBJECT_GENERATION_FINISH,
    SUBJECT_GENERATION_SETTLE,
    SUBJECT_GENERATION_START,
)
from launchdeck.control_api.consumers.env_requests import asker_of
from launchdeck.control_api.consumers.queue_group import QueueGroupServer
from launchdeck.control_api.domain import generation_checkpoint as checkpoint
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

Handler = Callable[[Any, Any], Awaitable[msgspec.Struct]]


@dataclass(frozen=True)
class Endpoint:
    """One subject: its request type, its reply type (each takes `error=`) and its handler
    (a pool connection and the decoded request in, the reply out)."""

    subject: str
    request: type[msgspec.Struct]
    reply: type[msgspec.Struct]
    handle: Handler

    @property
    def name(self) -> str:
        return self.subject.rsplit(".", 1)[-1]


def endpoints(keyring: KeyRing) -> tuple[Endpoint, ...]:
    async def start(conn: Any, request: GenerationStartRequest) -> GenerationStartReply:
        return await checkpoint.start(conn, keyring, request)

    return (
        Endpoint(SUBJECT_GENERATION_START, GenerationStartRequest, GenerationStartReply, start),
        Endpoint(
            SUBJECT_GENERATION_CLAIM,
            GenerationClaimRequest,
            GenerationClaimReply,
            checkpoint.claim,
        ),
        Endpoint(
            SUBJECT_GENERATION_SETTLE,
            GenerationSettleRequest,
            GenerationSettleReply,
            checkpoint.settle,
        ),
        Endpoint(
            SUBJECT_GENERATION_CACHE,
            GenerationCacheRequest,
            GenerationCacheReply,
            checkpoint.cache,
        ),
        Endpoint(
            SUBJECT_GENERATION_FINISH,
            GenerationFinishRequest,
            GenerationFinishReply,
            checkpoint.finish,
        ),
    )


class GenerationRpcServer:
    """Answers the five `ld.rpc.generation.*` subjects until cancelled (`run`)."""

    def __init__(self, pool: asyncpg.Pool, nc: Client, keyring: KeyRing) -> None:
        self._pool = pool
        handlers = [(e.subject, partial(self._answer, e)) for e in endpoints(keyring)]
        self._server = QueueGroupServer(nc, handlers, log_event="generation_rpc_serving")
        self.ready = self._server.ready
        self.run = self._server.run

    async def _answer(self, endpoint: Endpoint, msg: Msg) -> None:
        if not msg.reply:
            log.warning("generation_request_without_reply_subject", rpc=endpoint.name)
            return
        try:
            request = decode(msg.data, endpoint.request)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("generation_request_undecodable", rpc=endpoint.name, error=str(exc))
            error = f"not a {endpoint.request.__name__}: {exc}"
            await self._respond(endpoint, msg, endpoint.reply(error=error))
            return
        asker = asker_of(msg.reply)
        ids = {"rpc": endpoint.name, "job_id": getattr(request, "job_id", None), "asker": asker}
        try:
            checkpoint.check_asker(asker)
            async with self._pool.acquire() as conn:
                reply = await endpoint.handle(conn, request)
        except checkpoint.Refused as exc:
            log.warning("generation_request_refused", reason=str(exc), **ids)
            await self._respond(endpoint, msg, endpoint.reply(error=str(exc)))
            return
        except Exception as exc:
            # Unanswered: the generator retries until its own deadline.
            log.error("generation_request_failed", error=repr(exc), **ids)
            return
        # Never the reply itself in the log: a start's reply holds the API key.
        refusal = getattr(reply, "error", None)
        if refusal is not None:
            log.warning("generation_request_answered_with_error", error=refusal, **ids)
        else:
            log.debug("generation_request_answered", **ids)
        await self._respond(endpoint, msg, reply)

    async def _respond(self, endpoint: Endpoint, msg: Msg, reply: msgspec.Struct) -> None:
        try:
            await msg.respond(encode(reply))
        except Exception as exc:  # the connection is away: the generator asks again
            log.warning("generation_reply_not_sent", rpc=endpoint.name, error=repr(exc))
