"""The `webhook_deliveries` table: verified git-host deliveries, so a replay builds nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeliveryKey:
    """What a delivery is known by: a replay has the same."""

    project_id: uuid.UUID
    provider: str
    delivery_id: str


async def record(
    conn: Any,
    key: DeliveryKey,
    *,
    event: str,
    outcome: str,
    reason: str | None,
) -> bool:
    """Record a delivery; False when the project had it already (a replay). Concurrent
    identical deliveries wait on the key: one records, the others get False."""
    inserted = await conn.fetchval(
        """INSERT INTO webhook_deliveries
               (project_id, provider, delivery_id, event, outcome, reason)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING RETURNING true""",
        key.project_id,
        key.provider,
        key.delivery_id,
        event,
        outcome,
        reason,
    )
    return bool(inserted)


async def set_build(conn: Any, key: DeliveryKey, build_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET build_id = $4
           WHERE project_id = $1 AND provider = $2 AND delivery_id = $3""",
        key.project_id,
        key.provider,
        key.delivery_id,
        build_id,
    )


async def build_of(conn: Any, key: DeliveryKey) -> uuid.UUID | None:
    """The build an earlier delivery with this id queued, if any."""
    build_id: uuid.UUID | None = await conn.fetchval(
        """SELECT build_id FROM webhook_deliveries
           WHERE project_id = $1 AND provider = $2 AND delivery_id = $3""",
        key.project_id,
        key.provider,
        key.delivery_id,
    )
    return build_id


async def delete_older_than(conn: Any, age_s: float, *, limit: int) -> int:
    """Delete up to `limit` deliveries received over `age_s` ago; returns how many."""
    result: str = await conn.execute(
        """DELETE FROM webhook_deliveries WHERE ctid IN (
               SELECT ctid FROM webhook_deliveries
               WHERE received_at < now() - make_interval(secs => $1)
               LIMIT $2)""",
        age_s,
        limit,
    )
    return int(result.split()[-1])
