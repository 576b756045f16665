"""Acting on a verified webhook delivery: record it and, when it builds, queue the build and
audit it — one transaction, so a delivery is either fully acted on or not at all, and a replay
(the same delivery id for the same project and host) finds the record and builds nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from launchdeck.contracts.api import BuildCreate
from launchdeck.contracts.webhooks import HookStatus, WebhookProvider
from launchdeck.control_api.domain.builds import trigger_build
from launchdeck.control_api.domain.webhooks import Build, Decision
from launchdeck.control_api.store import audit, webhook_deliveries
from launchdeck.control_api.store.records import Project

TRIGGER = "webhook"  # builds.trigger of a build a push started
AUDIT_ACTION = "build.webhook"


@dataclass(frozen=True)
class Receipt:
    status: HookStatus
    reason: str | None = None
    build_id: uuid.UUID | None = None


async def receive(
    conn: Any,
    project: Project,
    *,
    provider: WebhookProvider,
    delivery_id: str,
    event: str,
    decision: Decision,
) -> Receipt:
    """Record the delivery and do what `decision` says, unless the project has had it."""
    building = isinstance(decision, Build)
    reason = None if isinstance(decision, Build) else decision.reason
    key = webhook_deliveries.DeliveryKey(project.id, provider, delivery_id)
    async with conn.transaction():
        recorded = await webhook_deliveries.record(
            conn,
            key,
            event=event,
            outcome="queued" if building else "ignored",
            reason=reason,
        )
        if not recorded:
            earlier = await webhook_deliveries.build_of(conn, key)
            return Receipt(
                "duplicate", f"delivery {delivery_id} was received before", build_id=earlier
            )
        if not isinstance(decision, Build):
            return Receipt("ignored", reason)
        build = await trigger_build(
            conn,
            project,
            BuildCreate(ref=decision.ref, environment=decision.environment),
            trigger=TRIGGER,
            commit_sha=decision.sha,
            commit_message=decision.message,
        )
        await webhook_deliveries.set_build(conn, key, build.id)
        await audit.insert(
            conn,
            token_id=None,
            token_name=f"webhook:{provider}",
            action=AUDIT_ACTION,
            project_id=project.id,
            target=f"/api/v1/builds/{build.id}",
            detail={
                "delivery_id": delivery_id,
                "event": event,
                "ref": decision.ref,
                "sha": decision.sha,
                "environment": decision.environment,
                "number": build.number,
            },
        )
    return Receipt("queued", build_id=build.id)
