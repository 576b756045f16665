"""The `build_logs` table: a finished build's whole log, compressed (see `logs.archive`)."""

from __future__ import annotations

import uuid
from typing import Any


async def save(conn: Any, build_id: uuid.UUID, *, lines: int, compressed: bytes) -> None:
    """Store the archive, never replacing one with a shorter log (a redelivered event after the
    stream's age limit must not erase a log archived earlier)."""
    await conn.execute(
        """INSERT INTO build_logs (build_id, lines, compressed) VALUES ($1, $2, $3)
           ON CONFLICT (build_id) DO UPDATE
               SET lines = EXCLUDED.lines, compressed = EXCLUDED.compressed, created_at = now()
               WHERE build_logs.lines <= EXCLUDED.lines""",
        build_id,
        lines,
        compressed,
    )


async def load(conn: Any, build_id: uuid.UUID) -> bytes | None:
    """The compressed archive, or None when the build's log was never archived."""
    compressed: bytes | None = await conn.fetchval(
        "SELECT compressed FROM build_logs WHERE build_id = $1", build_id
    )
    return compressed


async def delete_older_than(conn: Any, age_s: float, *, limit: int) -> int:
    """Delete up to `limit` archives stored over `age_s` ago; returns how many."""
    result: str = await conn.execute(
        """DELETE FROM build_logs WHERE build_id IN (
               SELECT build_id FROM build_logs
               WHERE created_at < now() - make_interval(secs => $1)
               LIMIT $2)""",
        age_s,
        limit,
    )
    return int(result.split()[-1])
