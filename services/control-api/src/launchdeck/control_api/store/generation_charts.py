"""What the dashboard's charts read from `generation_items`: a job's finished items summed per
time bucket, and a project's summed per UTC day. Only items with a `finished_at` count (pending
ones have none)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Bucket:
    """Items that finished in one bucket (by its number from the start) or on one day."""

    key: int
    done: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Day:
    day: date
    jobs: int
    items: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Span:
    """The first and last item finish times of a job (None when none has finished)."""

    first: datetime | None
    last: datetime | None


async def finish_span(conn: Any, job_id: uuid.UUID) -> Span:
    row = await conn.fetchrow(
        "SELECT min(finished_at) AS first, max(finished_at) AS last FROM generation_items"
        " WHERE job_id = $1 AND finished_at IS NOT NULL",
        job_id,
    )
    return Span(row["first"], row["last"])


async def job_buckets(
    conn: Any, job_id: uuid.UUID, *, start: datetime, bucket_s: int, last: int
) -> list[Bucket]:
    """Sums per bucket number (0 … `last`, an item outside the range counted in the nearest
    end bucket), only the buckets that have items."""
    rows = await conn.fetch(
        """SELECT least($4::bigint, greatest(0, floor(
                      extract(epoch FROM finished_at - $2::timestamptz) / $3)::bigint)) AS key,
                  count(*) FILTER (WHERE status = 'done') AS done,
                  count(*) FILTER (WHERE status = 'failed') AS failed,
                  coalesce(sum(tokens_in), 0) AS tokens_in,
                  coalesce(sum(tokens_out), 0) AS tokens_out,
                  coalesce(sum(cost_usd), 0) AS cost_usd
             FROM generation_items
            WHERE job_id = $1 AND finished_at IS NOT NULL
            GROUP BY 1 ORDER BY 1""",
        job_id,
        start,
        bucket_s,
        last,
    )
    return [
        Bucket(r["key"], r["done"], r["failed"], r["tokens_in"], r["tokens_out"], r["cost_usd"])
        for r in rows
    ]


async def project_days(conn: Any, project_id: uuid.UUID, *, since: date) -> list[Day]:
    """Sums per UTC day from `since` on, only the days that have items."""
    rows = await conn.fetch(
        """SELECT (i.finished_at AT TIME ZONE 'UTC')::date AS day,
                  count(DISTINCT i.job_id) AS jobs,
                  count(*) AS items,
                  coalesce(sum(i.tokens_in), 0) AS tokens_in,
                  coalesce(sum(i.tokens_out), 0) AS tokens_out,
                  coalesce(sum(i.cost_usd), 0) AS cost_usd
             FROM generation_items i JOIN generation_jobs j ON j.id = i.job_id
            WHERE j.project_id = $1 AND i.finished_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
            GROUP BY 1 ORDER BY 1""",
        project_id,
        since,
    )
    return [
        Day(r["day"], r["jobs"], r["items"], r["tokens_in"], r["tokens_out"], r["cost_usd"])
        for r in rows
    ]
