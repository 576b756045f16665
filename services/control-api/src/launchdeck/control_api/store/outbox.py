"""The `outbox` table, as far as the control-api reads it (`libs.outbox` writes and relays it)."""

from __future__ import annotations

from typing import Any


async def count_pending(conn: Any) -> int:
    """Commands written but not yet published."""
    pending: int = await conn.fetchval("SELECT count(*) FROM outbox")
    return pending
