"""The `processed_events` table: the consumer's inbox of applied stream sequences."""

from __future__ import annotations

from typing import Any


async def record(conn: Any, stream: str, stream_seq: int) -> bool:
    """Mark an event as applied; False when it already was (a redelivery)."""
    inserted = await conn.fetchval(
        """INSERT INTO processed_events (stream, stream_seq) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        stream,
        stream_seq,
    )
    return bool(inserted)
