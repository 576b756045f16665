"""The generator's checkpoint in SQL: a job as the generator runs it, its pending items, the
settling of results into items and totals, and the response cache.

Every statement here is set-based: a claim is one indexed range read, a settle one UPDATE of
all its items joined to the arrays of results (`unnest`), one UPDATE of the job's totals and
one INSERT into the cache — whatever the batch size.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from launchdeck.control_api.store import generations
from launchdeck.control_api.store.generations import GenerationJob
from launchdeck.control_api.store.records import EnvVar, from_record

_TOTALS = "status, project_id, total, done, failed, cached, tokens_in, tokens_out, cost_usd, error"
_JOB_TOTALS = ", ".join(f"j.{column}" for column in _TOTALS.split(", "))


class JobTotals(msgspec.Struct, kw_only=True, frozen=True):
    """A job's status and totals as stored."""

    status: str
    project_id: uuid.UUID
    total: int
    done: int
    failed: int
    cached: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    error: str | None


class CacheEntry(msgspec.Struct, kw_only=True, frozen=True):
    fingerprint: str
    content: str
    tokens_in: int
    tokens_out: int


@dataclass
class ItemResults:
    """Results of items as parallel columns (the arrays `settle_items` unnests); `outputs`
    are JSON texts."""

    index: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    tokens_in: list[int] = field(default_factory=list)
    tokens_out: list[int] = field(default_factory=list)
    cost_usd: list[Decimal] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)


@dataclass
class Answers:
    """Answers for the response cache, as parallel columns."""

    fingerprint: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tokens_in: list[int] = field(default_factory=list)
    tokens_out: list[int] = field(default_factory=list)


async def start(
    conn: Any, job_id: uuid.UUID, attempt: int
) -> tuple[GenerationJob, list[dict[str, Any]]] | None:
    """Take job `job_id` for delivery `attempt`: a queued job becomes running (its
    `started_at` now); any other keeps its status. The job as stored and its pinned template
    version's steps (the API's `TemplateStep` list as JSON); None when there is no such job."""
    taken = await conn.fetchval(
        """UPDATE generation_jobs SET
               status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
               started_at = CASE WHEN status = 'queued' THEN now() ELSE started_at END,
               attempt = greatest(attempt, $2),
               updated_at = now()
           WHERE id = $1
           RETURNING id""",
        job_id,
        attempt,
    )
    job = None if taken is None else await generations.get(conn, job_id)
    if job is None:
        return None
    steps = await conn.fetchval(
        "SELECT steps FROM template_versions WHERE template_id = $1 AND version = $2",
        job.template_id,
        job.template_version,
    )
    return job, steps


async def job_status(conn: Any, job_id: uuid.UUID) -> str | None:
    status: str | None = await conn.fetchval(
        "SELECT status FROM generation_jobs WHERE id = $1", job_id
    )
    return status


async def pending_items(
    conn: Any, job_id: uuid.UUID, *, after_index: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` pending items after `after_index`, in index order: a range scan of the
    partial index `generation_items_pending_idx`, so finished items cost nothing to skip."""
    rows = await conn.fetch(
        """SELECT idx, variables FROM generation_items
           WHERE job_id = $1 AND status = 'pending' AND idx > $2
           ORDER BY idx
           LIMIT $3""",
        job_id,
        after_index,
        limit,
    )
    return [(r["idx"], r["variables"]) for r in rows]


async def has_pending(conn: Any, job_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM generation_items
                          WHERE job_id = $1 AND status = 'pending')""",
        job_id,
    )
    return found


async def lock_job(conn: Any, job_id: uuid.UUID) -> bool:
    """Lock the job's row until the transaction ends (settles and the finish of one job take
    their turns, so concurrent settles never lock its items in different orders); False when
    there is no such job."""
    found = await conn.fetchval("SELECT 1 FROM generation_jobs WHERE id = $1 FOR UPDATE", job_id)
    return found is not None


async def settle_items(conn: Any, job_id: uuid.UUID, results: ItemResults) -> JobTotals | None:
    """Store `results` in the items still pending (an item already finished keeps its first
    result) and add exactly those to the job's totals; the totals after. None: no such job."""
    row = await conn.fetchrow(
        f"""WITH result AS (
                SELECT * FROM unnest($2::integer[], $3::text[], $4::text[], $5::text[],
                                     $6::integer[], $7::integer[], $8::numeric[],
                                     $9::boolean[], $10::integer[])
                    AS r(idx, status, outputs, error, tokens_in, tokens_out, cost_usd,
                         cached, attempts)),
            changed AS (
                UPDATE generation_items i SET
                    status = r.status,
                    outputs = r.outputs::jsonb,
                    error = r.error,
                    tokens_in = r.tokens_in,
                    tokens_out = r.tokens_out,
                    cost_usd = r.cost_usd,
                    cached = r.cached,
                    attempts = r.attempts,
                    finished_at = now()
                FROM result r
                WHERE i.job_id = $1 AND i.idx = r.idx AND i.status = 'pending'
                RETURNING i.status, i.cached, i.tokens_in, i.tokens_out, i.cost_usd),
            added AS (
                SELECT count(*) FILTER (WHERE status = 'done') AS done,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       count(*) FILTER (WHERE cached) AS cached,
                       coalesce(sum(tokens_in), 0) AS tokens_in,
                       coalesce(sum(tokens_out), 0) AS tokens_out,
                       coalesce(sum(cost_usd), 0) AS cost_usd
                FROM changed)
            UPDATE generation_jobs j SET
                done = j.done + a.done,
                failed = j.failed + a.failed,
                cached = j.cached + a.cached,
                tokens_in = j.tokens_in + a.tokens_in,
                tokens_out = j.tokens_out + a.tokens_out,
                cost_usd = j.cost_usd + a.cost_usd,
                updated_at = now()
            FROM added a
            WHERE j.id = $1
            RETURNING {_JOB_TOTALS}""",
        job_id,
        results.index,
        results.status,
        results.outputs,
        results.error,
        results.tokens_in,
        results.tokens_out,
        results.cost_usd,
        results.cached,
        results.attempts,
    )
    return None if row is None else JobTotals(**dict(row.items()))


async def store_answers(conn: Any, answers: Answers) -> None:
    """Add answers to the response cache; a fingerprint already there keeps its answer."""
    if not answers.fingerprint:
        return
    await conn.execute(
        """INSERT INTO generation_cache (fingerprint, content, tokens_in, tokens_out)
           SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[])
           ON CONFLICT (fingerprint) DO NOTHING""",
        answers.fingerprint,
        answers.content,
        answers.tokens_in,
        answers.tokens_out,
    )


async def cached_answers(conn: Any, fingerprints: list[str]) -> list[CacheEntry]:
    rows = await conn.fetch(
        """SELECT fingerprint, content, tokens_in, tokens_out FROM generation_cache
           WHERE fingerprint = ANY($1::text[])""",
        fingerprints,
    )
    return [CacheEntry(**dict(r.items())) for r in rows]


async def finish(
    conn: Any, job_id: uuid.UUID, *, status: str, error: str | None
) -> JobTotals | None:
    """End a queued or running job as `status`; None when the job is not (or no longer)
    active — a job already finished keeps its status."""
    row = await conn.fetchrow(
        f"""UPDATE generation_jobs SET
                status = $2, error = $3, finished_at = now(), updated_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING {_TOTALS}""",
        job_id,
        status,
        error,
    )
    return None if row is None else JobTotals(**dict(row.items()))


async def totals(conn: Any, job_id: uuid.UUID) -> JobTotals | None:
    row = await conn.fetchrow(f"SELECT {_TOTALS} FROM generation_jobs WHERE id = $1", job_id)
    return None if row is None else JobTotals(**dict(row.items()))


async def env_var(conn: Any, project_id: uuid.UUID, key: str) -> EnvVar | None:
    """The project's variable `key` (sealed), whatever its targets."""
    columns = ", ".join(EnvVar.__struct_fields__)
    row = await conn.fetchrow(
        f"SELECT {columns} FROM env_vars WHERE project_id = $1 AND key = $2", project_id, key
    )
    return None if row is None else from_record(EnvVar, row)
