"""The `outbox` table, as far as the control-api reads it (`libs.outbox` writes and relays it)."""

from __future__ import annotations

from typing import Any, NamedTuple


async def count_pending(conn: Any) -> int:
    """Commands written but not yet published."""
    pending: int = await conn.fetchval("SELECT count(*) FROM outbox")
    return pending


class OutboxBacklog(NamedTuple):
    pending: int  # rows not yet published
    lag_s: float  # age of the oldest of them, in seconds (0 when none)


async def backlog(conn: Any) -> OutboxBacklog:
    """What waits in the outbox, and for how long: the relay deletes a row once published, so a
    growing lag means it cannot publish (NATS away, a stream without a leader)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS pending,
                  coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS lag_s
           FROM outbox"""
    )
    return OutboxBacklog(int(row["pending"]), max(0.0, float(row["lag_s"])))
