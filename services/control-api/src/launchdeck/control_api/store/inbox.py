"""The `processed_events` table: the consumer's inbox of applied events, by their key
(`domain.events.EventOrigin.key`: the publisher's message id, else sequence and stored time)."""

from __future__ import annotations

from typing import Any


async def record(conn: Any, stream: str, event_key: str, stream_seq: int) -> bool:
    """Mark an event as applied; False when it already was (a redelivery). `stream_seq` is kept
    for whoever reads the table, not as part of the key."""
    inserted = await conn.fetchval(
        """INSERT INTO processed_events (stream, event_key, stream_seq) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        stream,
        event_key,
        stream_seq,
    )
    return bool(inserted)


async def delete_older_than(conn: Any, age_s: float, *, limit: int) -> int:
    """Delete up to `limit` rows of events applied over `age_s` ago; returns how many."""
    result: str = await conn.execute(
        """DELETE FROM processed_events WHERE ctid IN (
               SELECT ctid FROM processed_events
               WHERE processed_at < now() - make_interval(secs => $1)
               LIMIT $2)""",
        age_s,
        limit,
    )
    return int(result.split()[-1])
