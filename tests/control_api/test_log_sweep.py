"""The sweep of finished builds whose log was never archived (a crash between the final status
and the archive): it archives them a bounded batch at a time, leaves recent, running and already
archived builds alone, ends a log the worker never ended, and runs when the app starts."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.messages import LogLine
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.control_api.app import create_app
from launchdeck.control_api.logs.archive import load_archived_log, persist_build_log
from launchdeck.control_api.logs.stream import LogEnd, iter_log
from launchdeck.control_api.logs.sweep import LOCK_KEY, sweep_unarchived_logs
from launchdeck.control_api.store.records import Build
from tests.control_api.helpers import apply, build_event, new_build, new_project
from tests.control_api.log_support import DEADLINE_S, LogPublisher
from tests.control_api.support import ApiClient, make_settings
from tests.polling import eventually

MINUTE_AGO = timedelta(minutes=1)


async def finished_build(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    *,
    ago: timedelta = MINUTE_AGO,
    status: BuildStatus = "succeeded",
    lines: int = 3,
    eof: bool = True,
) -> Build:
    """A build that finished `ago` with a log of `lines` lines (ended by the worker or not)."""
    build = await new_build(pool, await new_project(pool), deploy=False)
    worker = LogPublisher(js, str(build.id))
    await worker.lines(lines)
    if eof:
        await worker.finish(status)
    await apply(pool, build_event(build, status, at=datetime.now(UTC) - ago))
    return build


async def archived_seqs(pool: asyncpg.Pool, build: Build) -> list[int] | None:
    lines = await load_archived_log(pool, str(build.id))
    return None if lines is None else [line.seq for line in lines]


async def drain_sweeps(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """Archive whatever earlier tests of this module left unarchived, however recent."""
    while await sweep_unarchived_logs(pool, js, min_age_s=0, limit=100):
        pass


async def test_sweep_archives_only_finished_unarchived_builds(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A build finished a minute ago without an archive is archived; one finished just now, a
    running one and an archived one are left as they are."""
    await drain_sweeps(pool, js)
    missed = await finished_build(pool, js, lines=7)
    recent = await finished_build(pool, js, ago=timedelta(0))
    running = await new_build(pool, await new_project(pool), deploy=False)
    await apply(pool, build_event(running, "building", at=datetime.now(UTC) - MINUTE_AGO))
    archived = await finished_build(pool, js, lines=2)
    await persist_build_log(pool, js, str(archived.id))
    archived_at = await pool.fetchval(
        "SELECT created_at FROM build_logs WHERE build_id = $1", archived.id
    )

    assert await sweep_unarchived_logs(pool, js) == 1
    assert await archived_seqs(pool, missed) == [1, 2, 3, 4, 5, 6, 7]
    assert await archived_seqs(pool, recent) is None
    assert await archived_seqs(pool, running) is None
    assert archived_at == await pool.fetchval(
        "SELECT created_at FROM build_logs WHERE build_id = $1", archived.id
    )
    assert await sweep_unarchived_logs(pool, js) == 0


async def test_sweep_is_bounded_and_picks_up_the_rest_next_time(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """With a batch of 2 and 3 builds to archive, the oldest two go first, then the third."""
    await drain_sweeps(pool, js)
    builds = [
        await finished_build(pool, js, ago=MINUTE_AGO * (3 - i), lines=i + 1) for i in range(3)
    ]
    assert await sweep_unarchived_logs(pool, js, limit=2) == 2
    assert [await archived_seqs(pool, b) for b in builds] == [[1], [1, 2], None]
    assert await sweep_unarchived_logs(pool, js, limit=2) == 1
    assert await archived_seqs(pool, builds[2]) == [1, 2, 3]


async def test_sweep_ends_a_log_whose_worker_died_before_its_eof(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A viewer following a log the worker never ended receives its lines, then the end with
    the build's recorded status once the sweep has archived it."""
    await drain_sweeps(pool, js)
    build = await finished_build(pool, js, status="failed", lines=4, eof=False)
    received: list[LogLine | LogEnd] = []

    async def follow() -> None:
        async with aclosing(iter_log(js, str(build.id))) as items:
            async for item in items:
                received.append(item)

    viewer = asyncio.create_task(follow())
    try:
        assert await sweep_unarchived_logs(pool, js) == 1
        await asyncio.wait_for(viewer, DEADLINE_S)
    finally:
        viewer.cancel()
    assert [i.seq for i in received if isinstance(i, LogLine)] == [1, 2, 3, 4]
    assert received[-1] == LogEnd("failed")
    assert await archived_seqs(pool, build) == [1, 2, 3, 4]


async def test_one_replica_sweeps_at_a_time(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """While another replica holds the sweep's lock, a sweep does nothing; after, it runs."""
    await drain_sweeps(pool, js)
    build = await finished_build(pool, js)
    async with pool.acquire() as other_replica:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        try:
            assert await sweep_unarchived_logs(pool, js) == 0
        finally:
            await other_replica.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    assert await archived_seqs(pool, build) is None
    assert await sweep_unarchived_logs(pool, js) == 1


async def test_app_sweeps_when_it_starts(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> None:
    """The application, started with its background tasks, archives a log left unarchived."""
    build = await finished_build(pool, js, lines=5)
    # The builds of this module were never meant to reach a worker: keep them off BUILDS.
    await pool.execute("DELETE FROM outbox")
    app = create_app(make_settings(database_url, nats_url), pool, nc, js)
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        archived = await eventually(
            "the log archived at start-up", lambda: archived_seqs(pool, build)
        )
    finally:
        await client.close()
    assert archived == [1, 2, 3, 4, 5]
