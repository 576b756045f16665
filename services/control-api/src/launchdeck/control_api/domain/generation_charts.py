"""Chart series of generation jobs: a job's timeline in at most `MAX_BUCKETS` buckets and a
project's cost per day, with the empty buckets and days filled in (a chart's x axis is time,
and a gap means nothing happened, not missing data)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from launchdeck.contracts.api import (
    GenerationCostDay,
    GenerationCosts,
    GenerationTimeline,
    GenerationTimelineBucket,
)
from launchdeck.control_api.store import generation_charts as store
from launchdeck.control_api.store.generations import GenerationJob
from launchdeck.libs.generation.pricing import usd_text

# Buckets when the size is chosen from the job's duration (a chart of a few hundred pixels).
MAX_BUCKETS = 120
# Buckets at most when the caller picks the size: a smaller size asked for is raised to fit.
MAX_ASKED_BUCKETS = 2_000
MAX_DAYS = 366


def bucket_size(duration_s: float, asked: int | None) -> int:
    """Whole seconds per bucket: `asked` (raised so there are at most MAX_ASKED_BUCKETS), else
    the smallest size giving at most MAX_BUCKETS."""
    if asked is not None:
        return max(asked, math.ceil(duration_s / MAX_ASKED_BUCKETS))
    return max(1, math.ceil(duration_s / MAX_BUCKETS))


async def job_timeline(
    conn: Any, job: GenerationJob, *, bucket_s: int | None, now: datetime | None = None
) -> GenerationTimeline:
    span = await store.finish_span(conn, job.id)
    start = job.started_at or job.created_at
    if span.first is not None and span.first < start:  # items settled before the row said so
        start = span.first
    end = job.finished_at or now or datetime.now(UTC)
    if span.last is not None and span.last > end:
        end = span.last
    duration_s = max(0.0, (end - start).total_seconds())
    size = bucket_size(duration_s, bucket_s)
    count = max(1, math.ceil(duration_s / size))
    found = {
        b.key: b
        for b in await store.job_buckets(conn, job.id, start=start, bucket_s=size, last=count - 1)
    }
    buckets = []
    for key in range(count):
        b = found.get(key)
        done, failed = (b.done, b.failed) if b else (0, 0)
        buckets.append(
            GenerationTimelineBucket(
                at=start + timedelta(seconds=key * size),
                done=done,
                failed=failed,
                items_per_s=round((done + failed) / size, 6),
                tokens_in=b.tokens_in if b else 0,
                tokens_out=b.tokens_out if b else 0,
                cost_usd=usd_text(b.cost_usd if b else Decimal(0)),
            )
        )
    return GenerationTimeline(job_id=job.id, start=start, end=end, bucket_s=size, buckets=buckets)


async def project_costs(
    conn: Any, project_id: uuid.UUID, *, days: int, today: date | None = None
) -> GenerationCosts:
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    found = {d.day: d for d in await store.project_days(conn, project_id, since=first)}
    out = []
    total = Decimal(0)
    for n in range(days):
        day = first + timedelta(days=n)
        d = found.get(day)
        cost = d.cost_usd if d else Decimal(0)
        total += cost
        out.append(
            GenerationCostDay(
                day=day.isoformat(),
                jobs=d.jobs if d else 0,
                items=d.items if d else 0,
                tokens_in=d.tokens_in if d else 0,
                tokens_out=d.tokens_out if d else 0,
                cost_usd=usd_text(cost),
            )
        )
    return GenerationCosts(project_id=project_id, days=out, total_usd=usd_text(total))
