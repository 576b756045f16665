"""The `project_domains` table: which project owns each custom domain (unique on lower(host))."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TakenDomain:
    host: str
    owner_id: uuid.UUID
    owner_name: str


async def replace(conn: Any, project_id: uuid.UUID, hosts: list[str]) -> list[TakenDomain]:
    """Make `hosts` the project's domains, in the caller's transaction; return the ones another
    project owns (the caller then rolls back).

    A host another transaction is claiming at the same moment makes the insert wait for it; once
    that one commits, the host is reported taken here (READ COMMITTED: each statement sees what
    committed before it), and if it rolls back, the host is ours.
    """
    await conn.execute(
        "DELETE FROM project_domains WHERE project_id = $1 AND NOT (lower(host) = ANY($2::text[]))",
        project_id,
        hosts,
    )
    await conn.execute(
        """INSERT INTO project_domains (host, project_id)
           SELECT lower(h), $1 FROM unnest($2::text[]) AS h
           ON CONFLICT DO NOTHING""",
        project_id,
        hosts,
    )
    rows = await conn.fetch(
        """SELECT pd.host, p.id, p.name
           FROM project_domains pd JOIN projects p ON p.id = pd.project_id
           WHERE lower(pd.host) = ANY($2::text[]) AND pd.project_id <> $1
           ORDER BY array_position($2::text[], lower(pd.host))""",
        project_id,
        hosts,
    )
    return [TakenDomain(r["host"], r["id"], r["name"]) for r in rows]
