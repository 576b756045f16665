"""The `projects` table."""

from __future__ import annotations

import uuid
from typing import Any

from launchdeck.control_api.store.records import Project, from_record

COLUMNS = ", ".join(Project.__struct_fields__)


async def insert(
    conn: Any,
    *,
    project_id: uuid.UUID,
    name: str,
    repo_url: str,
    branch: str,
    build_config: dict[str, Any],
    domains: list[str],
    secret_nonce: bytes,
    secret_ciphertext: bytes,
    secret_key_id: str,
    build_tags: bool = False,
    resources: dict[str, Any] | None = None,
) -> Project:
    """Raises asyncpg.UniqueViolationError when the name is taken. The webhook secret comes
    sealed (`domain.webhook_secrets`); the plaintext column is for older rows only."""
    row = await conn.fetchrow(
        f"""INSERT INTO projects (id, name, repo_url, branch, build_config, domains,
                webhook_secret_nonce, webhook_secret_ciphertext, webhook_secret_key_id,
                webhook_secret_rotated_at, build_tags, resources)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10, $11)
            RETURNING {COLUMNS}""",
        project_id,
        name,
        repo_url,
        branch,
        build_config,
        domains,
        secret_nonce,
        secret_ciphertext,
        secret_key_id,
        build_tags,
        resources or {},
    )
    return from_record(Project, row)


async def get(conn: Any, project_id: uuid.UUID) -> Project | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM projects WHERE id = $1", project_id)
    return None if row is None else from_record(Project, row)


async def get_by_name(conn: Any, name: str) -> Project | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM projects WHERE name = $1", name)
    return None if row is None else from_record(Project, row)


async def list_page(
    conn: Any, *, limit: int, after_name: str | None, only_id: uuid.UUID | None = None
) -> list[Project]:
    """Projects by name; `only_id` restricts the list to one project (project-scoped tokens)."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM projects
            WHERE ($1::text IS NULL OR name > $1)
              AND ($2::uuid IS NULL OR id = $2)
            ORDER BY name
            LIMIT $3""",
        after_name,
        only_id,
        limit,
    )
    return [from_record(Project, r) for r in rows]


async def update(conn: Any, project_id: uuid.UUID, changes: dict[str, Any]) -> Project | None:
    """Set the given columns (names come from code, never from the request)."""
    allowed = {"repo_url", "branch", "build_config", "domains", "build_tags", "resources"}
    assert set(changes) <= allowed, changes
    assignments = [f"{column} = ${i}" for i, column in enumerate(changes, start=2)]
    assignments.append("updated_at = now()")
    row = await conn.fetchrow(
        f"UPDATE projects SET {', '.join(assignments)} WHERE id = $1 RETURNING {COLUMNS}",
        project_id,
        *changes.values(),
    )
    return None if row is None else from_record(Project, row)


async def delete(conn: Any, project_id: uuid.UUID) -> bool:
    result: str = await conn.execute("DELETE FROM projects WHERE id = $1", project_id)
    return result == "DELETE 1"


async def lock(conn: Any, project_id: uuid.UUID) -> None:
    """Hold the project's row until the transaction ends (serialises its deployment decisions)."""
    await conn.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", project_id)


async def take_build_number(conn: Any, project_id: uuid.UUID) -> int:
    """The next build number of the project; the row lock serialises concurrent triggers."""
    number: int = await conn.fetchval(
        """UPDATE projects SET next_build_number = next_build_number + 1
           WHERE id = $1 RETURNING next_build_number - 1""",
        project_id,
    )
    return number
