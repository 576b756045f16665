"""The `templates` and `template_versions` tables. Versions are only ever inserted: there is no
UPDATE of a version here, so what a job pinned stays what it was."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

# One version of a template with the template's identity and every version number it has.
_SELECT = """
    SELECT t.id, t.name, v.version, v.steps, v.created_at, v.created_by,
           (SELECT array_agg(o.version ORDER BY o.version)
            FROM template_versions o WHERE o.template_id = t.id) AS versions
    FROM templates t
    JOIN template_versions v ON v.template_id = t.id"""
_LATEST = "v.version = (SELECT max(l.version) FROM template_versions l WHERE l.template_id = t.id)"


class TemplateVersion(msgspec.Struct, kw_only=True, frozen=True):
    """A template at one version; `steps` as stored (the API's `TemplateStep` list as JSON)."""

    id: uuid.UUID
    name: str
    version: int
    steps: list[dict[str, Any]]
    versions: list[int]
    created_at: datetime
    created_by: str | None


def _record(row: Any) -> TemplateVersion:
    return TemplateVersion(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        steps=row["steps"],
        versions=list(row["versions"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


async def insert_template(conn: Any, *, template_id: uuid.UUID, name: str) -> None:
    """Raises asyncpg.UniqueViolationError when the name is taken."""
    await conn.execute("INSERT INTO templates (id, name) VALUES ($1, $2)", template_id, name)


async def lock(conn: Any, template_id: uuid.UUID) -> bool:
    """Lock the template's row until the transaction ends (two PUTs number their versions one
    after the other); False when it is gone."""
    row = await conn.fetchval("SELECT 1 FROM templates WHERE id = $1 FOR UPDATE", template_id)
    return row is not None


async def insert_version(
    conn: Any,
    *,
    template_id: uuid.UUID,
    steps: list[dict[str, Any]],
    created_by: str | None,
) -> int:
    """Add the next version (the template's row must be locked, or new); its number."""
    version: int = await conn.fetchval(
        """INSERT INTO template_versions (template_id, version, steps, created_by)
           SELECT $1, coalesce(max(version), 0) + 1, $2, $3
           FROM template_versions WHERE template_id = $1
           RETURNING version""",
        template_id,
        steps,
        created_by,
    )
    return version


async def get(
    conn: Any, *, template_id: uuid.UUID | None, name: str | None, version: int | None
) -> TemplateVersion | None:
    """The template of that id or name at `version` (None: the latest)."""
    which = "v.version = $3" if version is not None else _LATEST
    row = await conn.fetchrow(
        f"""{_SELECT}
            WHERE (t.id = $1 OR t.name = $2) AND {which}""",
        template_id,
        name,
        *([version] if version is not None else []),
    )
    return None if row is None else _record(row)


async def list_page(conn: Any, *, limit: int, after_name: str | None) -> list[TemplateVersion]:
    """Templates by name, each at its latest version."""
    rows = await conn.fetch(
        f"""{_SELECT}
            WHERE ($1::text IS NULL OR t.name > $1) AND {_LATEST}
            ORDER BY t.name
            LIMIT $2""",
        after_name,
        limit,
    )
    return [_record(r) for r in rows]
