"""`ld.rpc.generation.*`: the control-api keeps the generator's checkpoint — it hands a job out,
pages its pending items, settles results idempotently into items, totals and the response
cache, and ends the job once — over core NATS, each service logged in as its own NATS user
(so the permission table is part of what is tested). Jobs are made with SQL here: the HTTP
API that creates them has tests of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import msgspec
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from launchdeck.contracts.api import (
    EnvVarSet,
    GenerationLimits,
    GenerationModel,
    GenerationParameters,
)
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationCall,
    GenerationClaimReply,
    GenerationClaimRequest,
    GenerationFinishReply,
    GenerationFinishRequest,
    GenerationItemResult,
    GenerationProgress,
    GenerationSettleReply,
    GenerationSettleRequest,
    GenerationStartReply,
    GenerationStartRequest,
    GenerationStepSpec,
    GenerationTotals,
)
from launchdeck.contracts.subjects import (
    SUBJECT_GENERATION_CACHE,
    SUBJECT_GENERATION_CLAIM,
    SUBJECT_GENERATION_FINISH,
    SUBJECT_GENERATION_SETTLE,
    SUBJECT_GENERATION_START,
    generation_event_subject,
)
from launchdeck.control_api.domain import env_vars
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs.jetstream import connect
from launchdeck.libs.outbox import OutboxRelay
from tests.control_api.helpers import new_project
from tests.env_rpc import service_connection
from tests.generation_rpc import STEPS, generation_server, insert_job
from tests.polling import eventually

RING = KeyRing.from_secrets("generation-rpc-tests-" + uuid.uuid4().hex)
KEY = "sk-" + uuid.uuid4().hex
WAIT_S = 5.0
R = TypeVar("R")


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def served(pool: asyncpg.Pool, nats_url: str) -> AsyncIterator[None]:
    async with generation_server(pool, nats_url, RING):
        yield


@pytest_asyncio.fixture(loop_scope="session")
async def generator_nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await service_connection(nats_url, "generator")
    yield nc
    await nc.close()


async def ask(nc: Client, subject: str, request: msgspec.Struct, reply: type[R]) -> R:
    answer = await nc.request(subject, encode(request), timeout=WAIT_S)
    return decode(answer.data, reply)


def matrix(n: int) -> list[dict[str, Any]]:
    return [{"service": f"service-{i}", "area": "Lyon"} for i in range(n)]


def done(index: int, **fields: Any) -> GenerationItemResult:
    values: dict[str, Any] = {
        "outputs": {"outline": {"title": f"t{index}"}, "page": f"# page {index}"},
        "tokens_in": 100,
        "tokens_out": 50,
        "cost_usd": "0.000045",
        "attempts": 2,
    }
    return GenerationItemResult(index=index, status="done", **(values | fields))


async def settle(
    nc: Client, job_id: uuid.UUID, *results: GenerationItemResult
) -> GenerationSettleReply:
    request = GenerationSettleRequest(job_id=str(job_id), results=list(results))
    return await ask(nc, SUBJECT_GENERATION_SETTLE, request, GenerationSettleReply)


async def claim(
    nc: Client, job_id: uuid.UUID, after: int = -1, limit: int = 256
) -> GenerationClaimReply:
    request = GenerationClaimRequest(job_id=str(job_id), after_index=after, limit=limit)
    return await ask(nc, SUBJECT_GENERATION_CLAIM, request, GenerationClaimReply)


async def job_row(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row: asyncpg.Record = await conn.fetchrow(
            "SELECT * FROM generation_jobs WHERE id = $1", job_id
        )
    return row


async def item_rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[int, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM generation_items WHERE job_id = $1", job_id)
    return {r["idx"]: r for r in rows}


# --- start ---------------------------------------------------------------------------------------


async def test_start_runs_a_queued_job_and_hands_out_its_definition(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """A queued job becomes running (started now, its delivery attempt recorded, never going
    back) and comes with its pinned steps, model, sampling, limits, budget and prices as
    decimal strings, and its totals."""
    project = await new_project(pool)
    job_id = await insert_job(
        pool,
        project.id,
        matrix(3),
        model=GenerationModel(
            provider="openai",
            name="gpt-4o-mini",
            base_url="http://llm.invalid:8000",
            options={"top_p": 0.9},
        ),
        parameters=GenerationParameters(temperature=0.0, max_tokens=300, seed=7),
        limits=GenerationLimits(concurrency=8, requests_per_minute=600, budget_usd="1.5"),
        prices=("0.15", "0.600000"),
        budget_usd="1.5",
        budget_tokens=100_000,
    )
    request = GenerationStartRequest(job_id=str(job_id), attempt=1)
    reply = await ask(generator_nc, SUBJECT_GENERATION_START, request, GenerationStartReply)
    assert reply.error is None
    assert reply.api_key is None
    job = reply.job
    assert job is not None
    assert (job.job_id, job.project_id, job.status) == (str(job_id), str(project.id), "running")
    assert job.template_name.startswith("pages-")
    assert job.template_version == 1
    assert job.steps == [
        GenerationStepSpec(
            name="outline", prompt=STEPS[0]["prompt"], output="json", schema={"type": "object"}
        ),
        GenerationStepSpec(name="page", prompt=STEPS[1]["prompt"], output="text"),
    ]
    assert (job.provider, job.model, job.base_url) == (
        "openai",
        "gpt-4o-mini",
        "http://llm.invalid:8000",
    )
    assert job.options == {"top_p": 0.9}
    assert (job.temperature, job.max_tokens, job.seed) == (0.0, 300, 7)
    assert (job.concurrency, job.requests_per_minute) == (8, 600)
    assert (job.budget_usd, job.budget_tokens) == ("1.5", 100_000)
    assert (job.price_input_per_mtok, job.price_output_per_mtok) == ("0.15", "0.6")
    assert job.cache is True
    assert (job.total, job.done, job.failed, job.cost_usd) == (3, 0, 0, "0")

    row = await job_row(pool, job_id)
    assert row["status"] == "running"
    assert row["started_at"] is not None
    assert row["attempt"] == 1
    started_at = row["started_at"]
    # A redelivery: still running, first start kept, the highest attempt recorded.
    for attempt in (3, 2):
        request = GenerationStartRequest(job_id=str(job_id), attempt=attempt)
        again = await ask(generator_nc, SUBJECT_GENERATION_START, request, GenerationStartReply)
        assert again.job is not None
        assert again.job.status == "running"
    row = await job_row(pool, job_id)
    assert (row["attempt"], row["started_at"]) == (3, started_at)


async def test_start_hands_the_api_key_from_the_projects_env_var(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """`model.api_key_env` names a project env var: its production value comes with the job
    (and is never logged); a variable the project lacks is answered with the job and an
    error saying so, which the generator fails the job with."""
    project = await new_project(pool)
    async with pool.acquire() as conn:
        await env_vars.set_var(conn, RING, project, "LLM_KEY", EnvVarSet(value=KEY))
        await env_vars.set_var(
            conn, RING, project, "BUILD_KEY", EnvVarSet(value=KEY, targets=["build"])
        )
    keyed = GenerationModel(provider="openai", name="gpt-4o-mini", api_key_env="LLM_KEY")
    job_id = await insert_job(pool, project.id, matrix(1), model=keyed)
    with capture_logs() as logs:
        reply = await ask(
            generator_nc,
            SUBJECT_GENERATION_START,
            GenerationStartRequest(job_id=str(job_id)),
            GenerationStartReply,
        )
    assert reply.error is None
    assert reply.api_key == KEY
    assert reply.job is not None
    assert reply.job.status == "running"
    assert KEY not in repr(logs)

    for name, error in (
        ("MISSING_KEY", "the project has no env var MISSING_KEY (model.api_key_env)"),
        ("BUILD_KEY", "env var BUILD_KEY (model.api_key_env) is not given to production"),
    ):
        model = GenerationModel(provider="openai", name="gpt-4o-mini", api_key_env=name)
        other = await insert_job(pool, project.id, matrix(1), model=model)
        reply = await ask(
            generator_nc,
            SUBJECT_GENERATION_START,
            GenerationStartRequest(job_id=str(other)),
            GenerationStartReply,
        )
        assert reply.job is not None
        assert reply.job.job_id == str(other)
        assert reply.api_key is None
        assert reply.error is not None
        assert error in reply.error


async def test_start_of_an_unknown_or_finished_job(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """An unknown job is answered with an error; a finished one with its final status (the
    generator drops it) and no API key."""
    ghost = uuid.uuid4()
    for unknown in (str(ghost), "not-a-uuid"):
        reply = await ask(
            generator_nc,
            SUBJECT_GENERATION_START,
            GenerationStartRequest(job_id=unknown),
            GenerationStartReply,
        )
        assert reply.job is None
        assert reply.error == f"no generation job {unknown}"

    project = await new_project(pool)
    async with pool.acquire() as conn:
        await env_vars.set_var(conn, RING, project, "LLM_KEY", EnvVarSet(value=KEY))
    keyed = GenerationModel(provider="openai", name="m", api_key_env="LLM_KEY")
    job_id = await insert_job(pool, project.id, matrix(2), model=keyed)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE generation_jobs SET status = 'cancelled' WHERE id = $1", job_id)
    reply = await ask(
        generator_nc,
        SUBJECT_GENERATION_START,
        GenerationStartRequest(job_id=str(job_id)),
        GenerationStartReply,
    )
    assert reply.job is not None
    assert reply.job.status == "cancelled"
    assert reply.api_key is None
    assert reply.error is None
    assert (await job_row(pool, job_id))["started_at"] is None


# --- claim ---------------------------------------------------------------------------------------


async def test_claim_pages_pending_items_and_skips_finished_ones(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """Pending items come in index order after `after_index`, `limit` at a time; settled
    items are never handed out again; a finished job hands out none."""
    project = await new_project(pool)
    items = matrix(8)
    job_id = await insert_job(pool, project.id, items)
    await settle(generator_nc, job_id, done(1), done(2), done(6))

    first = await claim(generator_nc, job_id, limit=3)
    assert first.error is None
    assert first.status == "queued"
    assert [(i.index, i.variables) for i in first.items] == [
        (0, items[0]),
        (3, items[3]),
        (4, items[4]),
    ]
    second = await claim(generator_nc, job_id, after=first.items[-1].index, limit=3)
    assert [i.index for i in second.items] == [5, 7]
    assert (await claim(generator_nc, job_id, after=7)).items == []

    async with pool.acquire() as conn:
        await conn.execute("UPDATE generation_jobs SET status = 'cancelled' WHERE id = $1", job_id)
    stopped = await claim(generator_nc, job_id)
    assert (stopped.status, stopped.items) == ("cancelled", [])


async def test_claim_skips_done_items_by_index_at_scale(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """With 50,000 items of which 49,000 are done, a claim reads the pending ones through the
    partial index (no scan over the finished ones) and answers quickly."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, [])
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO generation_items (job_id, idx, variables, status)
               SELECT $1, i, jsonb_build_object('n', i),
                      CASE WHEN i < 49000 THEN 'done' ELSE 'pending' END
               FROM generate_series(0, 49999) AS i""",
            job_id,
        )
        await conn.execute("UPDATE generation_jobs SET total = 50000 WHERE id = $1", job_id)
        await conn.execute("ANALYZE generation_items")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                """EXPLAIN SELECT idx, variables FROM generation_items
                   WHERE job_id = $1 AND status = 'pending' AND idx > $2
                   ORDER BY idx LIMIT $3""",
                job_id,
                -1,
                256,
            )
        )
    assert "generation_items_pending_idx" in plan, plan
    began = time.monotonic()
    reply = await claim(generator_nc, job_id, limit=256)
    elapsed = time.monotonic() - began
    assert [i.index for i in reply.items] == list(range(49000, 49256))
    assert reply.items[0].variables == {"n": 49000}
    assert elapsed < 1.0, elapsed


# --- settle and the cache ------------------------------------------------------------------------


async def test_settle_stores_results_once_and_keeps_the_totals(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """A settle stores each pending item's result and adds it to the totals; the same settle
    again (a lost reply, a redelivered job) changes nothing and counts nothing twice."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(4))
    calls = [
        GenerationCall(step="outline", fingerprint="fp-" + job_id.hex, content='{"t": 1}',
                       tokens_in=60, tokens_out=30),
        GenerationCall(step="page", fingerprint="fp-cached-" + job_id.hex, content="# p",
                       tokens_in=40, tokens_out=20, cached=True),
    ]  # fmt: skip
    failed = GenerationItemResult(
        index=2, status="failed", error="HTTP 400: model not found", attempts=1
    )
    cached = GenerationItemResult(
        index=3, status="done", outputs={"page": "from cache"}, cached=True, attempts=0
    )
    expected = GenerationTotals(
        status="queued", total=4, done=2, failed=1, tokens_in=100, tokens_out=50,
        cost_usd="0.000045",
    )  # fmt: skip
    for _ in range(2):
        reply = await settle(generator_nc, job_id, done(0, calls=calls), failed, cached)
        assert reply.error is None
        assert reply.totals == expected
    # A redelivered result mixed with a new one: only the new one counts.
    reply = await settle(generator_nc, job_id, done(0), done(1), done(1))
    assert reply.totals is not None
    assert (reply.totals.done, reply.totals.tokens_in, reply.totals.cost_usd) == (
        3,
        200,
        "0.00009",
    )

    row = await job_row(pool, job_id)
    assert (row["done"], row["failed"], row["cached"]) == (3, 1, 1)
    assert (row["tokens_in"], row["tokens_out"], row["cost_usd"]) == (200, 100, Decimal("0.00009"))
    items = await item_rows(pool, job_id)
    assert items[0]["status"] == "done"
    assert items[0]["finished_at"] is not None
    assert items[0]["outputs"] == {"outline": {"title": "t0"}, "page": "# page 0"}
    assert (items[0]["tokens_in"], items[0]["tokens_out"], items[0]["attempts"]) == (100, 50, 2)
    assert items[0]["cost_usd"] == Decimal("0.000045")
    assert items[0]["cached"] is False
    assert items[2]["status"] == "failed"
    assert items[2]["error"] == "HTTP 400: model not found"
    assert items[3]["cached"] is True
    assert items[3]["cost_usd"] == 0

    # The call made is in the cache; the one served from it is not stored again.
    lookup = GenerationCacheRequest(fingerprints=[c.fingerprint or "" for c in calls] + ["x"])
    hits = await ask(generator_nc, SUBJECT_GENERATION_CACHE, lookup, GenerationCacheReply)
    assert hits.error is None
    assert list(hits.hits) == ["fp-" + job_id.hex]
    answer = hits.hits["fp-" + job_id.hex]
    assert (answer.content, answer.tokens_in, answer.tokens_out) == ('{"t": 1}', 60, 30)


async def test_a_full_batch_settles_in_one_request(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """A thousand results (the most one settle takes) are stored and counted together; the
    job can then succeed, every item being finished."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(1000))
    results = [done(i, cost_usd="0.000001", tokens_in=1, tokens_out=1) for i in range(1000)]
    reply = await settle(generator_nc, job_id, *results)
    assert reply.totals == GenerationTotals(
        status="queued", total=1000, done=1000, tokens_in=1000, tokens_out=1000, cost_usd="0.001"
    )
    assert (await claim(generator_nc, job_id)).items == []
    succeeded = GenerationFinishRequest(job_id=str(job_id), status="succeeded")
    end = await ask(generator_nc, SUBJECT_GENERATION_FINISH, succeeded, GenerationFinishReply)
    assert end.totals is not None
    assert end.totals.status == "succeeded"


async def test_the_cache_keeps_the_first_answer_across_jobs(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """An answer stored by one job is found by another; a second answer under the same
    fingerprint does not replace it."""
    project = await new_project(pool)
    first = await insert_job(pool, project.id, matrix(1))
    second = await insert_job(pool, project.id, matrix(1))
    fingerprint = "fp-shared-" + uuid.uuid4().hex
    for job_id, content in ((first, "first"), (second, "second")):
        call = GenerationCall(step="page", fingerprint=fingerprint, content=content, tokens_in=9)
        assert (await settle(generator_nc, job_id, done(0, calls=[call]))).error is None
    lookup = GenerationCacheRequest(fingerprints=[fingerprint])
    hits = await ask(generator_nc, SUBJECT_GENERATION_CACHE, lookup, GenerationCacheReply)
    assert hits.hits[fingerprint].content == "first"
    assert hits.hits[fingerprint].tokens_in == 9


async def test_results_of_a_cancelled_job_are_still_stored(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """Calls in flight when the job was cancelled were paid for: their results are stored and
    counted, and the job stays cancelled."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(3))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE generation_jobs SET status = 'cancelled' WHERE id = $1", job_id)
    reply = await settle(generator_nc, job_id, done(0), done(1))
    assert reply.totals is not None
    assert (reply.totals.status, reply.totals.done, reply.totals.cost_usd) == (
        "cancelled",
        2,
        "0.00009",
    )
    items = await item_rows(pool, job_id)
    assert [items[i]["status"] for i in range(3)] == ["done", "done", "pending"]


async def test_a_nul_character_in_model_output_is_stored_replaced(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """Postgres stores no NUL in text or jsonb: model output holding one is stored with U+FFFD
    in its place, rather than the settle failing over and over."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(1))
    fingerprint = "fp-nul-" + job_id.hex
    result = GenerationItemResult(
        index=0,
        status="done",
        outputs={"page": "a\x00b", "outline": {"k\x00": ["c\x00"]}},
        calls=[GenerationCall(step="page", fingerprint=fingerprint, content="a\x00b")],
    )
    reply = await settle(generator_nc, job_id, result)
    assert reply.error is None
    assert reply.totals is not None
    assert reply.totals.done == 1
    items = await item_rows(pool, job_id)
    assert items[0]["outputs"] == {"page": "a\ufffdb", "outline": {"k\ufffd": ["c\ufffd"]}}
    lookup = GenerationCacheRequest(fingerprints=[fingerprint])
    hits = await ask(generator_nc, SUBJECT_GENERATION_CACHE, lookup, GenerationCacheReply)
    assert hits.hits[fingerprint].content == "a\ufffdb"


# --- finish --------------------------------------------------------------------------------------


async def test_finish_ends_the_job_once_and_announces_it(
    pool: asyncpg.Pool, served: None, generator_nc: Client, nc: Client, js: JetStreamContext
) -> None:
    """Finishing sets the final status, error and end time once — a later finish keeps them —
    and publishes one final `GenerationProgress` with the job's totals through the outbox."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(3))
    await ask(
        generator_nc,
        SUBJECT_GENERATION_START,
        GenerationStartRequest(job_id=str(job_id)),
        GenerationStartReply,
    )
    await settle(generator_nc, job_id, done(0), done(1))
    received: list[GenerationProgress] = []

    async def on_event(msg: Any) -> None:
        received.append(decode(msg.data, GenerationProgress))

    sub = await nc.subscribe(generation_event_subject(str(job_id)), cb=on_event)
    try:
        await nc.flush()
        finish = GenerationFinishRequest(
            job_id=str(job_id), status="budget_exceeded", error="budget of $0.0001 reached"
        )
        reply = await ask(generator_nc, SUBJECT_GENERATION_FINISH, finish, GenerationFinishReply)
        assert reply.error is None
        assert reply.totals == GenerationTotals(
            status="budget_exceeded",
            total=3,
            done=2,
            tokens_in=200,
            tokens_out=100,
            cost_usd="0.00009",
            error="budget of $0.0001 reached",
        )
        later = GenerationFinishRequest(job_id=str(job_id), status="succeeded")
        again = await ask(generator_nc, SUBJECT_GENERATION_FINISH, later, GenerationFinishReply)
        assert again.totals == reply.totals

        relay = OutboxRelay(pool, js)

        async def relayed() -> int:
            await relay.relay_once()
            return len(received)

        assert await eventually("the final progress event", relayed) == 1
        async with pool.acquire() as conn:  # nothing more for this job waits in the outbox
            left = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE subject = $1",
                generation_event_subject(str(job_id)),
            )
        assert left == 0
    finally:
        await sub.unsubscribe()
    [event] = received
    assert (event.job_id, event.project_id, event.status) == (
        str(job_id),
        str(project.id),
        "budget_exceeded",
    )
    assert (event.total, event.done, event.failed, event.cost_usd) == (3, 2, 0, "0.00009")
    assert event.error == "budget of $0.0001 reached"
    assert event.at.tzinfo is not None
    row = await job_row(pool, job_id)
    assert row["status"] == "budget_exceeded"
    assert row["finished_at"] is not None


# --- who may ask, and what is refused ------------------------------------------------------------


async def test_only_the_generator_is_answered(
    pool: asyncpg.Pool, served: None, nats_url: str, nc: Client, generator_nc: Client
) -> None:
    """A request whose answer would go to another service's inbox, or to an inbox of no
    platform service (an operator's `nats req`), gets an error and no data: no job, no key."""
    project = await new_project(pool)
    async with pool.acquire() as conn:
        await env_vars.set_var(conn, RING, project, "LLM_KEY", EnvVarSet(value=KEY))
    keyed = GenerationModel(provider="openai", name="m", api_key_env="LLM_KEY")
    job_id = await insert_job(pool, project.id, matrix(2), model=keyed)
    # The operator may publish anything: posing with the deploy-engine's inbox shows that
    # the asker is known by where the answer goes.
    posing = await connect(nats_url, name="posing", inbox_prefix="_INBOX.deploy-engine")
    try:
        for client, who in ((nc, "an inbox of no platform service"), (posing, "deploy-engine")):
            start = await ask(
                client,
                SUBJECT_GENERATION_START,
                GenerationStartRequest(job_id=str(job_id)),
                GenerationStartReply,
            )
            assert (start.job, start.api_key) == (None, None)
            assert start.error is not None
            assert start.error.endswith(f"would go to {who}")
            items = await claim(client, job_id)
            assert items.items == []
            assert items.status is None
            assert items.error is not None
    finally:
        await posing.close()
    assert (await job_row(pool, job_id))["status"] == "queued"


async def test_bad_requests_are_answered_with_an_error(
    pool: asyncpg.Pool, served: None, generator_nc: Client
) -> None:
    """Undecodable requests, limits out of range, a finish to a non-final status and a bad
    cost are answered with `error`, and change nothing."""
    project = await new_project(pool)
    job_id = await insert_job(pool, project.id, matrix(2))
    garbage = await generator_nc.request(SUBJECT_GENERATION_SETTLE, b"{", timeout=WAIT_S)
    reply = decode(garbage.data, GenerationSettleReply)
    assert reply.error is not None
    assert reply.error.startswith("not a GenerationSettleRequest")

    for limit in (0, 1001):
        bad = await claim(generator_nc, job_id, limit=limit)
        assert bad.error == f"limit must be from 1 to 1000, not {limit}"
    lookup = GenerationCacheRequest(fingerprints=[str(i) for i in range(1001)])
    too_many = await ask(generator_nc, SUBJECT_GENERATION_CACHE, lookup, GenerationCacheReply)
    assert too_many.error == "at most 1000 fingerprints per lookup, not 1001"
    running = GenerationFinishRequest(job_id=str(job_id), status="running")
    not_final = await ask(generator_nc, SUBJECT_GENERATION_FINISH, running, GenerationFinishReply)
    assert not_final.error is not None
    assert "not running" in not_final.error
    succeeded = GenerationFinishRequest(job_id=str(job_id), status="succeeded")
    early = await ask(generator_nc, SUBJECT_GENERATION_FINISH, succeeded, GenerationFinishReply)
    assert early.error == f"generation job {job_id} has pending items: it cannot succeed"
    for cost in ("lots", "-1", "NaN"):
        result = GenerationItemResult(index=0, status="done", cost_usd=cost)
        reply = await settle(generator_nc, job_id, result)
        assert reply.error is not None
        assert "results[0].cost_usd" in reply.error
    ghost = await settle(generator_nc, uuid.uuid4(), done(0))
    assert ghost.error is not None
    assert ghost.error.startswith("no generation job")

    row = await job_row(pool, job_id)
    assert (row["status"], row["done"], row["finished_at"]) == ("queued", 0, None)
