"""Serving `ld.rpc.env`: the env vars of one build or deployment, to the service that runs it.

The transport half of `domain.env_vars.values_for`. Why request/reply and not a stream: the values
are secrets, and whatever goes into a JetStream stream stays there (and in its replicas, and in
what an operator reads with `nats stream view`) for as long as the stream keeps it. A core NATS
request is delivered to one subscriber and stored nowhere; the answer goes to the asker's own
inbox, which only its NATS user may subscribe to (`libs.nats_access`: `_INBOX.<user>.>`). That
inbox is also how the asker is known: a build's variables are answered only to an inbox of the
build-worker, a deployment's only to one of the deploy-engine — so credentials leaked from the
build-worker (the service beside untrusted builds) cannot get production values.

Every control-api replica subscribes in the queue group `control-api`: one of them answers each
request. A refusal is answered (`EnvReply.error`: the build is finished, not the project's…); a
request that cannot be answered now (Postgres away) gets no answer, so the asker's timeout and
retry (`libs.env_client.fetch_env`) handle it like a control-api that is restarting.
"""

from __future__ import annotations

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import EnvReply, EnvRequest
from launchdeck.contracts.subjects import SUBJECT_ENV_REQUESTS
from launchdeck.control_api.consumers.queue_group import QueueGroupServer
from launchdeck.control_api.domain.env_vars import EnvRefused, values_for
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs.logging import get_logger
from launchdeck.libs.nats_access import SERVICES

log = get_logger(__name__)


def asker_of(reply: str) -> str | None:
    """The platform service (its NATS user) whose inbox `reply` is, or None."""
    for access in SERVICES:
        if reply.startswith(access.inbox_prefix + "."):
            return access.user
    return None


class EnvRequestServer:
    """Answers `ld.rpc.env` until cancelled (`run`)."""

    def __init__(self, pool: asyncpg.Pool, nc: Client, keyring: KeyRing) -> None:
        self._pool = pool
        self._keyring = keyring
        handlers = [(SUBJECT_ENV_REQUESTS, self._answer)]
        self._server = QueueGroupServer(nc, handlers, log_event="env_requests_serving")
        self.ready = self._server.ready
        self.run = self._server.run

    async def _answer(self, msg: Msg) -> None:
        if not msg.reply:
            log.warning("env_request_without_reply_subject")
            return
        try:
            request = decode(msg.data, EnvRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("env_request_undecodable", error=str(exc))
            await msg.respond(encode(EnvReply(error=f"not an EnvRequest: {exc}")))
            return
        asker = asker_of(msg.reply)
        ids = {
            "project_id": request.project_id,
            "target": request.target,
            "build_id": request.build_id,
            "deployment_id": request.deployment_id,
            "asker": asker,
        }
        try:
            async with self._pool.acquire() as conn:
                values = await values_for(conn, self._keyring, request, asker=asker)
        except EnvRefused as exc:
            log.warning("env_request_refused", reason=str(exc), **ids)
            await msg.respond(encode(EnvReply(error=str(exc))))
            return
        except Exception as exc:
            # Unanswered: the asker retries until its own deadline (a database that is away).
            log.error("env_request_failed", error=repr(exc), **ids)
            return
        # Names only in the log, never values.
        log.info("env_request_answered", variables=len(values), **ids)
        await msg.respond(encode(EnvReply(vars=values)))
