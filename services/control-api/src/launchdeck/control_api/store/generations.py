"""The `generation_jobs` and `generation_items` tables as the HTTP API uses them: creating a
job with its items, reading jobs and items page by page, cancelling. (Claiming and settling
items for the generator is `store.generation_items`, the RPC's.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from launchdeck.contracts.statuses import GENERATION_ACTIVE, GenerationItemStatus, GenerationStatus

# A job's row with its template's name (what GenerationOut shows).
_JOB_COLUMNS = (
    "j.id, j.project_id, j.template_id, t.name AS template_name, j.template_version, j.status, "
    "j.model, j.parameters, j.limits, j.price_input_per_mtok, j.price_output_per_mtok, "
    "j.budget_usd, j.budget_tokens, j.group_by, j.cache, j.variable_names, j.total, j.done, "
    "j.failed, j.cached, j.tokens_in, j.tokens_out, j.cost_usd, j.error, j.attempt, "
    "j.created_by, j.created_at, j.started_at, j.finished_at, j.updated_at"
)
_FROM = "generation_jobs j JOIN templates t ON t.id = j.template_id"
_ITEM_COLUMNS = (
    "idx, status, variables, grp, outputs, error, tokens_in, tokens_out, cost_usd, cached, "
    "attempts, finished_at"
)
# Rows per INSERT of items: 100,000 items go in ten statements of arrays (no per-row round trip).
ITEM_BATCH = 10_000

_encoder = msgspec.json.Encoder()


class GenerationJob(msgspec.Struct, kw_only=True, frozen=True):
    """A job as stored: `model`, `parameters`, `limits` are the API's structs as JSON (the model
    names an env var for its key, never the key); money is Decimal."""

    id: uuid.UUID
    project_id: uuid.UUID
    template_id: uuid.UUID
    template_name: str
    template_version: int
    status: GenerationStatus
    model: dict[str, Any]
    parameters: dict[str, Any]
    limits: dict[str, Any]
    price_input_per_mtok: Decimal
    price_output_per_mtok: Decimal
    budget_usd: Decimal | None
    budget_tokens: int | None
    group_by: str | None
    cache: bool
    variable_names: list[str]
    total: int
    done: int
    failed: int
    cached: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    error: str | None
    attempt: int
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done - self.failed)


class GenerationItem(msgspec.Struct, kw_only=True, frozen=True):
    idx: int
    status: GenerationItemStatus
    variables: dict[str, Any]
    grp: str | None
    outputs: dict[str, Any] | None
    error: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    cached: bool
    attempts: int
    finished_at: datetime | None


def _job(row: Any) -> GenerationJob:
    fields = {name: row[name] for name in GenerationJob.__struct_fields__}
    fields["variable_names"] = list(row["variable_names"])
    return GenerationJob(**fields)


def _item(row: Any) -> GenerationItem:
    return GenerationItem(**{name: row[name] for name in GenerationItem.__struct_fields__})


@dataclass(frozen=True)
class NewJob:
    """What a new job stores (the totals start at 0; `total` is its item count)."""

    id: uuid.UUID
    project_id: uuid.UUID
    template_id: uuid.UUID
    template_version: int
    model: dict[str, Any]
    parameters: dict[str, Any]
    limits: dict[str, Any]
    price_input_per_mtok: Decimal
    price_output_per_mtok: Decimal
    budget_usd: Decimal | None
    budget_tokens: int | None
    group_by: str | None
    cache: bool
    variable_names: list[str]
    total: int
    created_by: str | None


async def insert_job(conn: Any, job: NewJob) -> None:
    await conn.execute(
        """INSERT INTO generation_jobs (
               id, project_id, template_id, template_version, model, parameters, limits,
               price_input_per_mtok, price_output_per_mtok, budget_usd, budget_tokens, group_by,
               cache, variable_names, total, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
        job.id,
        job.project_id,
        job.template_id,
        job.template_version,
        job.model,
        job.parameters,
        job.limits,
        job.price_input_per_mtok,
        job.price_output_per_mtok,
        job.budget_usd,
        job.budget_tokens,
        job.group_by,
        job.cache,
        job.variable_names,
        job.total,
        job.created_by,
    )


async def insert_items(
    conn: Any, job_id: uuid.UUID, variables: Sequence[bytes], groups: Sequence[str | None]
) -> None:
    """Items 0..n-1 of a job, `pending`: `variables[i]` is item i's variables as JSON (encoded
    by the caller, which checked it), `groups[i]` its group. Arrays per statement, so 100,000
    items take ten statements rather than 100,000 round trips."""
    for start in range(0, len(variables), ITEM_BATCH):
        chunk = variables[start : start + ITEM_BATCH]
        await conn.execute(
            """INSERT INTO generation_items (job_id, idx, variables, grp)
               SELECT $1, $2 + v.ord - 1, v.doc::jsonb, v.grp
               FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS v(doc, grp, ord)""",
            job_id,
            start,
            [doc.decode() for doc in chunk],
            list(groups[start : start + ITEM_BATCH]),
        )


async def get(conn: Any, job_id: uuid.UUID, *, for_update: bool = False) -> GenerationJob | None:
    lock = " FOR UPDATE OF j" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM {_FROM} WHERE j.id = $1{lock}", job_id)
    return None if row is None else _job(row)


async def list_page(
    conn: Any,
    project_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[GenerationJob]:
    """A project's jobs, newest first; `before` is the (created_at, id) of the last job of the
    previous page."""
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM {_FROM}
            WHERE j.project_id = $1
              AND ($2::timestamptz IS NULL OR (j.created_at, j.id) < ($2, $3::uuid))
            ORDER BY j.created_at DESC, j.id DESC
            LIMIT $4""",
        project_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [_job(r) for r in rows]


async def items_page(
    conn: Any, job_id: uuid.UUID, *, limit: int, after_idx: int | None, status: str | None
) -> list[GenerationItem]:
    """A job's items in index order after `after_idx` (None: from the first), of one status
    when `status` is given."""
    rows = await conn.fetch(
        f"""SELECT {_ITEM_COLUMNS} FROM generation_items
            WHERE job_id = $1
              AND ($2::int IS NULL OR idx > $2)
              AND ($3::text IS NULL OR status = $3)
            ORDER BY idx
            LIMIT $4""",
        job_id,
        after_idx,
        status,
        limit,
    )
    return [_item(r) for r in rows]


async def cancel(conn: Any, job_id: uuid.UUID, *, at: datetime) -> bool:
    """Mark a queued or running job `cancelled`; False when it had finished already."""
    status = await conn.fetchval(
        """UPDATE generation_jobs
           SET status = 'cancelled', finished_at = $2, updated_at = now()
           WHERE id = $1 AND status = ANY($3::text[])
           RETURNING status""",
        job_id,
        at,
        sorted(GENERATION_ACTIVE),
    )
    return status is not None


async def active_created_by(conn: Any, project_id: uuid.UUID, created_by: str) -> bool:
    """Whether a job of the project made by `created_by` (a schedule: `schedule:<id>`) is still
    queued or running (a schedule's jobs do not overlap unless it says so)."""
    found: bool = await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM generation_jobs
               WHERE project_id = $1 AND created_by = $2 AND status = ANY($3::text[]))""",
        project_id,
        created_by,
        sorted(GENERATION_ACTIVE),
    )
    return found


async def env_var_targets(conn: Any, project_id: uuid.UUID, key: str) -> list[str] | None:
    """The targets of the project's env var `key` (None: it has none): a job's `api_key_env`
    must name one (its value is read by the RPC at run time, never here)."""
    targets = await conn.fetchval(
        "SELECT targets FROM env_vars WHERE project_id = $1 AND key = $2", project_id, key
    )
    return None if targets is None else list(targets)
