"""Asking the control-api for the env vars of one build or one deployment (`ld.rpc.env`).

Env var values are secrets: they are never put in a JetStream stream, an event or a command. A
worker that needs them — the build-worker at the start of each build attempt, the deploy-engine
when it starts an app — asks the control-api over core NATS request/reply, which stores nothing,
and keeps the answer in memory for that one build or process. The control-api answers only for a
build or deployment that exists, belongs to the project and is not finished, and only to the
service that runs it (it knows the asker by the reply inbox: `_INBOX.<user>.…`, which only that
NATS user may subscribe to).

Two failures, to be told apart by the caller:
- `EnvRefused`: the control-api answered no (the build is finished, the deployment superseded,
  a value cannot be decrypted…). Asking again will not help; the job should stop with the reason.
- `EnvUnavailable`: nobody answered within `wait_s` (the control-api is restarting, NATS is
  away). An infrastructure failure: the job's attempt should be retried, never run without its
  variables.
"""

from __future__ import annotations

import time

import msgspec
import nats.errors
from nats.aio.client import Client

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import EnvReply, EnvRequest
from launchdeck.contracts.subjects import SUBJECT_ENV_REQUESTS
from launchdeck.libs.outage import Outage, describe_error

DEFAULT_TIMEOUT_S = 5.0

# What "nobody answered" looks like to nats-py: no subscriber (the control-api is down), no answer
# in time, or a connection that is away for now.
_UNANSWERED = (
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    TimeoutError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
)


class EnvError(Exception):
    """The env vars could not be had; see the two kinds below."""


class EnvRefused(EnvError):
    """The control-api refused the request; `reason` says why (readable, no secret in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the control-api refused the env vars: {reason}")
        self.reason = reason


class EnvUnavailable(EnvError):
    """No answer within the time allowed: an infrastructure failure, to be retried."""

    def __init__(self, waited_s: float, last_error: str) -> None:
        super().__init__(
            f"the control-api did not answer the env request for {waited_s:.0f}s ({last_error})"
        )
        self.waited_s = waited_s
        self.last_error = last_error


async def fetch_env(
    nc: Client,
    request: EnvRequest,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    wait_s: float = 0.0,
) -> dict[str, str]:
    """The decrypted env vars (name → value) the control-api holds for `request`.

    Each try waits `timeout_s` for an answer; tries go on (with backoff, one `outage_began` /
    `outage_ended` log pair) until `wait_s` has passed since the first, then `EnvUnavailable`.
    A refusal raises `EnvRefused` at once. The values are secrets: keep them in memory, give
    them to the child's environment and to the log masker (`libs.masking`), log only names.
    """
    payload = encode(request)
    give_up_at = time.monotonic() + wait_s
    started = time.monotonic()
    outage = Outage(
        "control-api env vars",
        project_id=request.project_id,
        target=request.target,
        of=request.build_id or request.deployment_id or "",
    )
    while True:
        try:
            message = await nc.request(SUBJECT_ENV_REQUESTS, payload, timeout=timeout_s)
        except _UNANSWERED as exc:
            left = give_up_at - time.monotonic()
            if left <= 0:
                raise EnvUnavailable(time.monotonic() - started, describe_error(exc)) from exc
            await outage.backoff(exc, max_wait_s=left)
            continue
        outage.over()
        try:
            reply = decode(message.data, EnvReply)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EnvRefused(f"the answer was not an EnvReply ({exc})") from None
        if reply.error is not None:
            raise EnvRefused(reply.error)
        return dict(reply.vars)
