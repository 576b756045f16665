"""The webhook secret columns of `projects`: sealed (nonce, ciphertext, key id), or the
plaintext of a project created before secrets were sealed (until `secrets rotate` seals it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredSecret:
    project_id: uuid.UUID
    nonce: bytes | None
    ciphertext: bytes | None
    key_id: str | None
    plaintext: str | None = field(repr=False)  # a legacy row's, never a new one's


_COLUMNS = """id, webhook_secret_nonce, webhook_secret_ciphertext, webhook_secret_key_id,
              webhook_secret"""


def _stored(row: Any) -> StoredSecret:
    return StoredSecret(
        project_id=row["id"],
        nonce=row["webhook_secret_nonce"],
        ciphertext=row["webhook_secret_ciphertext"],
        key_id=row["webhook_secret_key_id"],
        plaintext=row["webhook_secret"],
    )


async def get(conn: Any, project_id: uuid.UUID) -> StoredSecret | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM projects WHERE id = $1", project_id)
    return None if row is None else _stored(row)


async def store_sealed(
    conn: Any, project_id: uuid.UUID, *, nonce: bytes, ciphertext: bytes, key_id: str
) -> datetime | None:
    """Replace the project's secret (the plaintext column is cleared); returns when, or None
    when there is no such project."""
    rotated_at: datetime | None = await conn.fetchval(
        """UPDATE projects SET
               webhook_secret = NULL,
               webhook_secret_nonce = $2,
               webhook_secret_ciphertext = $3,
               webhook_secret_key_id = $4,
               webhook_secret_rotated_at = now()
           WHERE id = $1
           RETURNING webhook_secret_rotated_at""",
        project_id,
        nonce,
        ciphertext,
        key_id,
    )
    return rotated_at


async def reseal(
    conn: Any, project_id: uuid.UUID, *, nonce: bytes, ciphertext: bytes, key_id: str
) -> None:
    """The same secret under another key (or sealed for the first time): its rotation time
    stays, since the secret itself did not change."""
    await conn.execute(
        """UPDATE projects SET
               webhook_secret = NULL,
               webhook_secret_nonce = $2,
               webhook_secret_ciphertext = $3,
               webhook_secret_key_id = $4
           WHERE id = $1""",
        project_id,
        nonce,
        ciphertext,
        key_id,
    )


async def needing_reseal(
    conn: Any, key_ids: list[str], *, limit: int, after: uuid.UUID | None
) -> list[StoredSecret]:
    """Projects (by id, after `after`) whose secret is in plaintext or under one of `key_ids`,
    locked until the transaction ends."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM projects
            WHERE (webhook_secret_ciphertext IS NULL OR webhook_secret_key_id = ANY($1::text[]))
              AND ($2::uuid IS NULL OR id > $2)
            ORDER BY id
            LIMIT $3
            FOR UPDATE""",
        key_ids,
        after,
        limit,
    )
    return [_stored(r) for r in rows]


async def count_by_key_id(conn: Any) -> dict[str, int]:
    """Secrets per key id; `plaintext` counts the ones not sealed yet."""
    rows = await conn.fetch(
        """SELECT COALESCE(webhook_secret_key_id, 'plaintext') AS key_id, count(*) AS n
           FROM projects GROUP BY 1"""
    )
    return {r["key_id"]: r["n"] for r in rows}
