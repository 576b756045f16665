"""Reading a generation job's results: the job with its pinned template version, and its items
streamed from a server-side cursor (exports, manifests, publish).

The items are read in chunks from a cursor inside one read-only, repeatable-read transaction:
one consistent snapshot however long the client takes, a few thousand rows in memory at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any, Literal

import msgspec

CHUNK_ROWS = 1000  # rows per cursor fetch: what an export holds of the rows at a time

ItemOrder = Literal["index", "group"]

_ITEM_COLUMNS = (
    "idx, status, grp, variables, outputs, error, tokens_in, tokens_out, cost_usd, cached"
)


class ResultsJob(msgspec.Struct, kw_only=True, frozen=True):
    """What exports and publish need of a job: its project, its pinned template version (name
    and steps), its model, grouping and variable names."""

    id: uuid.UUID
    project_id: uuid.UUID
    status: str
    template_id: uuid.UUID
    template_name: str
    template_version: int
    steps: list[dict[str, Any]]  # as stored: `contracts.api.TemplateStep` as JSON
    model: dict[str, Any]
    group_by: str | None
    variable_names: list[str]
    done: int


async def get_job(conn: Any, job_id: uuid.UUID) -> ResultsJob | None:
    row = await conn.fetchrow(
        """SELECT j.id, j.project_id, j.status, j.template_id, t.name AS template_name,
                  j.template_version, v.steps, j.model, j.group_by, j.variable_names, j.done
           FROM generation_jobs j
           JOIN templates t ON t.id = j.template_id
           JOIN template_versions v
             ON v.template_id = j.template_id AND v.version = j.template_version
           WHERE j.id = $1""",
        job_id,
    )
    if row is None:
        return None
    return ResultsJob(
        id=row["id"],
        project_id=row["project_id"],
        status=row["status"],
        template_id=row["template_id"],
        template_name=row["template_name"],
        template_version=row["template_version"],
        steps=list(row["steps"]),
        model=dict(row["model"]),
        group_by=row["group_by"],
        variable_names=list(row["variable_names"]),
        done=row["done"],
    )


async def count_items(conn: Any, job_id: uuid.UUID, *, status: str | None = None) -> int:
    """The job's items (of `status`), counted from the rows."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM generation_items
           WHERE job_id = $1 AND ($2::text IS NULL OR status = $2)""",
        job_id,
        status,
    )
    return count


async def group_values(conn: Any, job_id: uuid.UUID) -> list[str | None]:
    """The job's distinct group values in the order `item_chunks(order="group")` reads them
    (NULL last), from the (job_id, grp, idx) index."""
    rows = await conn.fetch(
        "SELECT DISTINCT grp FROM generation_items WHERE job_id = $1 ORDER BY grp", job_id
    )
    return [r["grp"] for r in rows]


async def item_chunks(
    conn: Any,
    job_id: uuid.UUID,
    *,
    order: ItemOrder,
    status: str | None = None,
    group: tuple[str | None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncGenerator[list[Any], None]:
    """The job's item rows (`_ITEM_COLUMNS`), `chunk_rows` at a time, by index or by (group,
    index); only those of `status`, and of the one group in `group` when given (a 1-tuple, so
    the group NULL can be asked for). Close the iterator (`aclosing`) if not read to the end:
    it holds a transaction on `conn`."""
    where = ["job_id = $1", "($2::text IS NULL OR status = $2)"]
    args: list[Any] = [job_id, status]
    if group is not None:
        where.append("grp IS NOT DISTINCT FROM $3")
        args.append(group[0])
    order_by = "idx" if order == "index" else "grp, idx"
    query = (
        f"SELECT {_ITEM_COLUMNS} FROM generation_items WHERE {' AND '.join(where)} "
        f"ORDER BY {order_by}"
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(query, *args)
        while rows := await cursor.fetch(chunk_rows):
            yield rows
