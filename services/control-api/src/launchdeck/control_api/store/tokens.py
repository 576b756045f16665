"""The `api_tokens` table: one row per minted token, keyed by its JWT `jti` (never its value)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from launchdeck.control_api.store.records import from_record


class TokenRow(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    name: str
    scopes: list[str]
    project_id: uuid.UUID | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


COLUMNS = ", ".join(TokenRow.__struct_fields__)


async def insert(
    conn: Any,
    *,
    token_id: uuid.UUID,
    name: str,
    scopes: list[str],
    project_id: uuid.UUID | None,
    expires_at: datetime | None,
    token_sha256: bytes | None,
    created_by: str | None,
    revoked_at: datetime | None = None,
) -> TokenRow:
    row = await conn.fetchrow(
        f"""INSERT INTO api_tokens
                (id, name, scopes, project_id, expires_at, token_sha256, created_by, revoked_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING {COLUMNS}""",
        token_id,
        name,
        scopes,
        project_id,
        expires_at,
        token_sha256,
        created_by,
        revoked_at,
    )
    return from_record(TokenRow, row)


async def get(conn: Any, token_id: uuid.UUID) -> TokenRow | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM api_tokens WHERE id = $1", token_id)
    return None if row is None else from_record(TokenRow, row)


async def list_page(
    conn: Any, *, limit: int, before: tuple[datetime, uuid.UUID] | None
) -> list[TokenRow]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM api_tokens
            WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid))
            ORDER BY created_at DESC, id DESC
            LIMIT $3""",
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [from_record(TokenRow, r) for r in rows]


async def revoke(conn: Any, token_id: uuid.UUID) -> TokenRow | None:
    """Set revoked_at (kept if already revoked); None when there is no such token."""
    row = await conn.fetchrow(
        f"""UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
            WHERE id = $1 RETURNING {COLUMNS}""",
        token_id,
    )
    return None if row is None else from_record(TokenRow, row)


async def touch(conn: Any, uses: dict[uuid.UUID, datetime]) -> None:
    """Record when each token was last used; only ever moves forward (replicas flush in any
    order)."""
    await conn.execute(
        """UPDATE api_tokens t SET last_used_at = u.at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
           WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)""",
        list(uses),
        list(uses.values()),
    )
