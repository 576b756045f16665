"""The `env_vars` table: sealed values (nonce, ciphertext, key id), never plaintext."""

from __future__ import annotations

import uuid
from typing import Any

from launchdeck.control_api.store.records import EnvVar, from_record

COLUMNS = ", ".join(EnvVar.__struct_fields__)


async def upsert(
    conn: Any,
    *,
    project_id: uuid.UUID,
    key: str,
    targets: list[str],
    nonce: bytes,
    ciphertext: bytes,
    key_id: str,
) -> EnvVar:
    """Create the variable or replace its value and targets (`created_at` stays)."""
    row = await conn.fetchrow(
        f"""INSERT INTO env_vars (project_id, key, targets, nonce, ciphertext, key_id)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (project_id, key) DO UPDATE SET
                targets = EXCLUDED.targets,
                nonce = EXCLUDED.nonce,
                ciphertext = EXCLUDED.ciphertext,
                key_id = EXCLUDED.key_id,
                updated_at = now()
            RETURNING {COLUMNS}""",
        project_id,
        key,
        targets,
        nonce,
        ciphertext,
        key_id,
    )
    return from_record(EnvVar, row)


async def delete(conn: Any, project_id: uuid.UUID, key: str) -> bool:
    result: str = await conn.execute(
        "DELETE FROM env_vars WHERE project_id = $1 AND key = $2", project_id, key
    )
    return result == "DELETE 1"


async def list_page(
    conn: Any, project_id: uuid.UUID, *, limit: int, after_key: str | None
) -> list[EnvVar]:
    """A project's variables by name."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM env_vars
            WHERE project_id = $1 AND ($2::text IS NULL OR key > $2)
            ORDER BY key
            LIMIT $3""",
        project_id,
        after_key,
        limit,
    )
    return [from_record(EnvVar, r) for r in rows]


async def for_target(conn: Any, project_id: uuid.UUID, target: str) -> list[EnvVar]:
    """Every variable of the project given to `target` (build, preview or production)."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM env_vars
            WHERE project_id = $1 AND $2 = ANY(targets)
            ORDER BY key""",
        project_id,
        target,
    )
    return [from_record(EnvVar, r) for r in rows]


async def under_keys(
    conn: Any,
    key_ids: list[str],
    *,
    limit: int,
    after: tuple[uuid.UUID, str] | None = None,
) -> list[EnvVar]:
    """Up to `limit` variables sealed under one of `key_ids`, in (project, name) order after
    `after`, locked until the transaction ends (a concurrent PUT waits, then writes under the
    current key)."""
    after_project, after_key = after if after else (None, None)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM env_vars
            WHERE key_id = ANY($1::text[])
              AND ($2::uuid IS NULL OR (project_id, key) > ($2, $3::text))
            ORDER BY project_id, key
            LIMIT $4
            FOR UPDATE""",
        key_ids,
        after_project,
        after_key,
        limit,
    )
    return [from_record(EnvVar, r) for r in rows]


async def reseal(
    conn: Any,
    project_id: uuid.UUID,
    key: str,
    *,
    nonce: bytes,
    ciphertext: bytes,
    key_id: str,
) -> None:
    """Store a value sealed again under another key (the value and `updated_at` are unchanged:
    nobody changed the variable)."""
    await conn.execute(
        """UPDATE env_vars SET nonce = $3, ciphertext = $4, key_id = $5
           WHERE project_id = $1 AND key = $2""",
        project_id,
        key,
        nonce,
        ciphertext,
        key_id,
    )


async def count_by_key_id(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT key_id, count(*) AS n FROM env_vars GROUP BY key_id")
    return {r["key_id"]: r["n"] for r in rows}
