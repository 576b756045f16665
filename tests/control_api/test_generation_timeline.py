"""The chart series of generation jobs over HTTP: a job's timeline (items finished per time
bucket, items/s, tokens, cost) and a project's cost per UTC day across its jobs.

Jobs and items are inserted with SQL, with the finish times the generator would have left."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from launchdeck.contracts.api import TemplateCreate, TemplateStep
from launchdeck.control_api.domain.templates import create_template
from launchdeck.control_api.store.records import Project
from tests.control_api.helpers import new_project
from tests.control_api.support import Api, token, unique

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


async def make_job(
    pool: asyncpg.Pool,
    project: Project,
    items: list[tuple[str, datetime | None, int, int, str]],
    *,
    started_at: datetime | None = T0,
    finished_at: datetime | None = None,
    status: str = "running",
) -> uuid.UUID:
    """A job whose items are (status, finished_at, tokens_in, tokens_out, cost)."""
    async with pool.acquire() as conn:
        template = await create_template(
            conn,
            TemplateCreate(name=unique("tpl"), steps=[TemplateStep(name="page", prompt="Hi.")]),
            created_by="tests",
        )
        job_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO generation_jobs
                   (id, project_id, template_id, template_version, status, model, parameters,
                    limits, total, created_at, started_at, finished_at)
               VALUES ($1, $2, $3, $4, $5, $6, '{}', '{}', $7, $8, $9, $10)""",
            job_id,
            project.id,
            template.id,
            template.version,
            status,
            {"provider": "ollama", "name": "llama3.2"},
            len(items),
            (started_at or T0) - timedelta(seconds=1),
            started_at,
            finished_at,
        )
        await conn.executemany(
            """INSERT INTO generation_items
                   (job_id, idx, status, variables, tokens_in, tokens_out, cost_usd, finished_at)
               VALUES ($1, $2, $3, '{}', $4, $5, $6, $7)""",
            [
                (job_id, n, st, t_in, t_out, Decimal(cost), at)
                for n, (st, at, t_in, t_out, cost) in enumerate(items)
            ],
        )
    return job_id


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_timeline_sums_items_per_bucket_with_empty_buckets_filled(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A 60 s job: 1 s buckets (60 ≤ 120), each item in the bucket of its finish time."""
    project = await new_project(pool)
    job = await make_job(
        pool,
        project,
        [
            ("done", at(0.5), 10, 100, "0.001"),
            ("done", at(0.9), 20, 200, "0.002"),
            ("failed", at(2.1), 5, 0, "0"),
            ("done", at(59.5), 1, 1, "0.0005"),
            ("pending", None, 0, 0, "0"),
        ],
        finished_at=at(60),
        status="succeeded",
    )
    reply = await api.call("GET", f"/api/v1/generations/{job}/timeline")
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["bucket_s"] == 1
    assert len(body["buckets"]) == 60
    assert datetime.fromisoformat(body["start"]) == T0
    assert datetime.fromisoformat(body["end"]) == at(60)
    first, second, third, last = (body["buckets"][i] for i in (0, 1, 2, 59))
    assert first == {
        "at": "2026-11-20T10:00:00Z",
        "done": 2,
        "failed": 0,
        "items_per_s": 2.0,
        "tokens_in": 30,
        "tokens_out": 300,
        "cost_usd": "0.003",
    }
    assert (second["done"], second["failed"], second["items_per_s"], second["cost_usd"]) == (
        0,
        0,
        0.0,
        "0",
    )
    assert (third["failed"], third["tokens_in"], third["items_per_s"]) == (1, 5, 1.0)
    assert (last["done"], last["cost_usd"], last["at"]) == (1, "0.0005", "2026-11-20T10:00:59Z")
    assert sum(b["done"] + b["failed"] for b in body["buckets"]) == 4


async def test_timeline_bucket_size_keeps_at_most_120_buckets_or_follows_bucket_s(
    api: Api, pool: asyncpg.Pool
) -> None:
    project = await new_project(pool)
    job = await make_job(
        pool,
        project,
        [("done", at(30), 1, 1, "0.01"), ("done", at(3599), 1, 1, "0.02")],
        finished_at=at(3600),
        status="succeeded",
    )
    chosen = (await api.call("GET", f"/api/v1/generations/{job}/timeline")).body
    assert chosen["bucket_s"] == 30  # 3600 s / 120
    assert len(chosen["buckets"]) == 120
    assert chosen["buckets"][1]["done"] == 1  # 30 s starts the second bucket
    assert chosen["buckets"][1]["items_per_s"] == round(1 / 30, 6)
    assert chosen["buckets"][-1]["cost_usd"] == "0.02"

    asked = (await api.call("GET", f"/api/v1/generations/{job}/timeline?bucket_s=600")).body
    assert asked["bucket_s"] == 600
    assert [b["done"] for b in asked["buckets"]] == [1, 0, 0, 0, 0, 1]
    assert asked["buckets"][0]["cost_usd"] == "0.01"

    bad = await api.call("GET", f"/api/v1/generations/{job}/timeline?bucket_s=0")
    assert bad.status == 422
    assert "bucket_s" in str(bad.body)


async def test_timeline_of_a_running_job_reaches_now_and_a_queued_job_has_one_empty_bucket(
    api: Api, pool: asyncpg.Pool
) -> None:
    project = await new_project(pool)
    started = datetime.now(UTC) - timedelta(seconds=10)
    running = await make_job(
        pool, project, [("done", started + timedelta(seconds=2), 3, 4, "0")], started_at=started
    )
    body = (await api.call("GET", f"/api/v1/generations/{running}/timeline")).body
    assert body["bucket_s"] == 1
    assert 10 <= len(body["buckets"]) <= 12
    assert body["buckets"][2]["done"] == 1
    assert datetime.fromisoformat(body["end"]) >= started + timedelta(seconds=10)

    queued = await make_job(pool, project, [("pending", None, 0, 0, "0")], started_at=None)
    body = (await api.call("GET", f"/api/v1/generations/{queued}/timeline")).body
    assert [b["done"] for b in body["buckets"]] == [0] * len(body["buckets"])


async def test_costs_per_day_across_the_projects_jobs(api: Api, pool: asyncpg.Pool) -> None:
    """Every day of the window, oldest first, empty ones at 0; other projects' jobs not counted."""
    project = await new_project(pool)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday, long_ago = today - timedelta(days=1), today - timedelta(days=40)
    await make_job(
        pool,
        project,
        [
            ("done", today, 10, 20, "0.5"),
            ("failed", today, 1, 0, "0.25"),
            ("done", yesterday, 5, 5, "1.125"),
            ("done", long_ago, 5, 5, "99"),
        ],
        started_at=long_ago,
    )
    await make_job(pool, project, [("done", today, 1, 2, "0.000001")], started_at=today)
    other = await new_project(pool)
    await make_job(pool, other, [("done", today, 1, 1, "7")], started_at=today)

    reply = await api.call("GET", f"/api/v1/projects/{project.name}/generations/costs")
    assert reply.status == 200, reply.body
    days: list[dict[str, Any]] = reply.body["days"]
    assert len(days) == 30
    assert days[-1] == {
        "day": today.date().isoformat(),
        "jobs": 2,
        "items": 3,
        "tokens_in": 12,
        "tokens_out": 22,
        "cost_usd": "0.750001",
    }
    assert (days[-2]["day"], days[-2]["cost_usd"], days[-2]["jobs"]) == (
        yesterday.date().isoformat(),
        "1.125",
        1,
    )
    assert all(d["cost_usd"] == "0" and d["items"] == 0 for d in days[:-2])
    assert reply.body["total_usd"] == "1.875001"

    week = (await api.call("GET", f"/api/v1/projects/{project.id}/generations/costs?days=1")).body
    assert [d["cost_usd"] for d in week["days"]] == ["0.750001"]
    assert (
        await api.call("GET", f"/api/v1/projects/{project.id}/generations/costs?days=0")
    ).status == 422


async def test_charts_need_read_on_the_jobs_project(api: Api, pool: asyncpg.Pool) -> None:
    project = await new_project(pool)
    job = await make_job(pool, project, [("done", at(1), 1, 1, "0")])
    reader = token(["read"], str(project.id))
    stranger = token(["read"], str((await new_project(pool)).id))
    timeline = f"/api/v1/generations/{job}/timeline"
    costs = f"/api/v1/projects/{project.id}/generations/costs"
    assert (await api.call("GET", timeline, token=reader)).status == 200
    assert (await api.call("GET", costs, token=reader)).status == 200
    assert (await api.call("GET", timeline, token=stranger)).status == 404
    assert (await api.call("GET", costs, token=stranger)).status == 404
    assert (await api.call("GET", timeline, token="")).status == 401
