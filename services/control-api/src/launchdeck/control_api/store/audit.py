"""The `audit_log` table: who (token id and name) did what to which project, and when.

Entries are written by the audit middleware after a successful write, by the token routes and
by the webhook receivers (token_name like "webhook:github", no token id). `detail` must never
hold a secret value (env var values, token values, webhook secrets): callers pass only names,
ids and settings.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from launchdeck.control_api.store.records import from_record


class AuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    at: datetime
    token_id: uuid.UUID | None
    token_name: str
    action: str
    project_id: uuid.UUID | None
    target: str | None
    detail: dict[str, Any]
    request_id: str | None


COLUMNS = ", ".join(AuditEntry.__struct_fields__)


async def insert(
    conn: Any,
    *,
    token_id: uuid.UUID | str | None,
    token_name: str,
    action: str,
    project_id: uuid.UUID | str | None,
    target: str | None,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> uuid.UUID:
    """Record one entry (in the caller's transaction when `conn` is in one); returns its id."""
    entry_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO audit_log
               (id, token_id, token_name, action, project_id, target, detail, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        entry_id,
        _uuid(token_id),
        token_name,
        action,
        _uuid(project_id),
        target,
        detail or {},
        request_id,
    )
    return entry_id


async def list_page(
    conn: Any,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    project_id: uuid.UUID | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Newest first; `before` is the (at, id) of the last entry of the previous page."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM audit_log
            WHERE ($1::timestamptz IS NULL OR (at, id) < ($1, $2::uuid))
              AND ($3::uuid IS NULL OR project_id = $3)
              AND ($4::text IS NULL OR action = $4)
            ORDER BY at DESC, id DESC
            LIMIT $5""",
        before[0] if before else None,
        before[1] if before else None,
        project_id,
        action,
        limit,
    )
    return [from_record(AuditEntry, r) for r in rows]


def _uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(value)
