"""The cheapest query: is Postgres answering (readiness)?"""

from __future__ import annotations

from typing import Any


async def ping(conn: Any) -> None:
    await conn.fetchval("SELECT 1")
