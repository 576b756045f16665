"""HTTP handlers of git-host webhooks (`POST /api/v1/hooks/{github,gitlab,gitea,generic}/
{project}`, public: the signature is the credential) and of the webhook secret's rotation
(`POST /api/v1/projects/{id}/webhook-secret`, a token with `write` on the project).

A delivery goes through, in this order, answering at the first step that fails:
1. the body, read up to LAUNCHDECK_WEBHOOK_MAX_BYTES: a larger one is a 413 as soon as it is
   known (from Content-Length, before reading anything; else once that much has come);
2. the project (`{project}` is its id or name): unknown → 404. That answer only says whether a
   project exists — which its site's host name says anyway — and nothing about a signature,
   since none is checked without a secret;
3. the signature against the project's secret (`domain.webhooks.verify`): wrong or missing →
   401, and nothing is recorded (a probe leaves no trace to learn from, and cannot fill the
   deliveries table);
4. the event and its payload: a push's JSON parsed (malformed → 400, wrong shape → 422); other
   events need only be a JSON object;
5. the decision and the delivery's record, with the build when there is one
   (`domain.webhook_receipts`): 202 `queued`, `ignored` (with why) or `duplicate`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from launchdeck.contracts.webhooks import (
    WEBHOOK_PROVIDERS,
    HookAnswer,
    WebhookProvider,
    WebhookSecretOut,
)
from launchdeck.control_api.api.json_io import json_response
from launchdeck.control_api.api.keys import KEYRING, METRICS, POOL, SETTINGS
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain import webhook_secrets
from launchdeck.control_api.domain import webhooks as hooks
from launchdeck.control_api.domain.errors import DomainError
from launchdeck.control_api.domain.projects import resolve_project
from launchdeck.control_api.domain.webhook_receipts import receive
from launchdeck.control_api.store.records import Project
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

CHUNK_BYTES = 64 * 1024
# Error statuses as the deliveries metric names them.
_OUTCOME_OF_STATUS = {401: "rejected", 404: "not_found", 413: "too_large"}


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge once it is known to exceed `limit` bytes."""
    too_large = hooks.PayloadTooLarge(f"a webhook body may have at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _receiver(provider: WebhookProvider) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        metrics = request.app[METRICS]
        try:
            answer = await _deliver(request, provider)
        except DomainError as exc:
            outcome = _OUTCOME_OF_STATUS.get(exc.status, "invalid")
            metrics.count_webhook_delivery(provider, outcome)
            log.info(
                "webhook_refused",
                provider=provider,
                project=request.match_info["project"][:100],
                status=exc.status,
                reason=exc.detail,
            )
            raise
        metrics.count_webhook_delivery(provider, answer.status)
        return json_response(answer, status=202)

    handler.__name__ = f"receive_{provider}"
    return handler


async def _deliver(request: web.Request, provider: WebhookProvider) -> HookAnswer:
    body = await read_capped(request, request.app[SETTINGS].webhook_max_bytes)
    id_or_name = request.match_info["project"]
    async with request.app[POOL].acquire() as conn:
        project = await resolve_project(conn, id_or_name)
        secret = await webhook_secrets.secret_of(conn, request.app[KEYRING], project.id)
    hooks.verify(provider, request.headers, body, secret)
    document = hooks.json_body(body, request.content_type)
    event = hooks.event_of(provider, request.headers)
    delivery = hooks.delivery_id(provider, request.headers, body)
    decision = _decide(project, event, document)
    async with request.app[POOL].acquire() as conn:
        receipt = await receive(
            conn,
            project,
            provider=provider,
            delivery_id=delivery,
            event=event.name,
            decision=decision,
        )
    log.info(
        "webhook_received",
        provider=provider,
        project=project.name,
        delivery_id=delivery,
        hook_event=event.name,
        status=receipt.status,
        reason=receipt.reason,
        build_id=str(receipt.build_id) if receipt.build_id else None,
    )
    return HookAnswer(status=receipt.status, reason=receipt.reason, build_id=receipt.build_id)


def _decide(project: Project, event: hooks.Event, document: bytes) -> hooks.Decision:
    if event.kind != "push":
        hooks.check_json_object(document)
        if event.kind == "ping":
            return hooks.Ignore(f"pong: the hook reaches project {project.name!r}, signed right")
        return hooks.Ignore(f"{event.name!r} events build nothing (only pushes do)")
    push = hooks.parse_push(document)
    policy = hooks.ProjectPolicy(
        name=project.name, branch=project.branch, build_tags=project.build_tags
    )
    return hooks.decide(policy, push)


async def rotate_secret(request: web.Request) -> web.Response:
    """A new webhook secret, shown in this answer only; the old one stops verifying now."""
    project = await load_project(request, "write")
    async with request.app[POOL].acquire() as conn:
        rotated = await webhook_secrets.rotate(conn, request.app[KEYRING], project.id)
    log.info("webhook_secret_rotated", project=project.name)
    return json_response(
        WebhookSecretOut(webhook_secret=rotated.secret, rotated_at=rotated.rotated_at)
    )


def setup_hook_routes(app: web.Application) -> None:
    for provider in WEBHOOK_PROVIDERS:
        app.router.add_post(f"/api/v1/hooks/{provider}/{{project}}", _receiver(provider))
    app.router.add_post("/api/v1/projects/{id}/webhook-secret", rotate_secret)
