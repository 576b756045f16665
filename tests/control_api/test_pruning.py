"""Periodic pruning: archived build logs and processed-event rows by age, and the `artifacts`
object store down to what deployments and rollbacks need (a real object store); the app prunes
on its own when it starts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS, artifact_key
from launchdeck.control_api.app import create_app
from launchdeck.control_api.housekeeping.prune import LOCK_KEY, Retention, prune_once
from launchdeck.control_api.logs.archive import load_archived_log, persist_build_log
from launchdeck.control_api.logs.sweep import sweep_unarchived_logs
from launchdeck.control_api.store.records import Build
from tests.control_api.helpers import (
    activate,
    apply,
    artifact,
    build_event,
    new_build,
    new_project,
    succeed,
)
from tests.control_api.support import ApiClient, make_settings
from tests.control_api.test_log_sweep import finished_build
from tests.polling import eventually

DAY = timedelta(days=1)
RETENTION = Retention(
    build_logs_s=90 * DAY.total_seconds(),
    processed_events_s=7 * DAY.total_seconds(),
    keep_artifacts=2,
    artifacts_min_age=timedelta(0),
)


def now() -> datetime:
    return datetime.now(UTC)


async def archive(pool: asyncpg.Pool, js: JetStreamContext, build: Build, ago: timedelta) -> None:
    """Archive the build's log, as if that happened `ago`."""
    await persist_build_log(pool, js, str(build.id))
    await pool.execute(
        "UPDATE build_logs SET created_at = $2 WHERE build_id = $1", build.id, now() - ago
    )


async def test_archived_logs_past_their_retention_go_and_are_not_archived_again(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A log archived 100 days ago (its build finished then) is deleted with a 90-day
    retention; one archived yesterday stays; the log sweep does not archive the old one again."""
    old = await finished_build(pool, js, ago=100 * DAY, lines=3)
    await archive(pool, js, old, 100 * DAY)
    recent = await finished_build(pool, js, ago=DAY, lines=2)
    await archive(pool, js, recent, DAY)

    pruned = await prune_once(pool, js, RETENTION)
    assert pruned.build_logs == 1
    assert await load_archived_log(pool, str(old.id)) is None
    assert [line.seq for line in await load_archived_log(pool, str(recent.id)) or []] == [1, 2]

    await sweep_unarchived_logs(pool, js, min_age_s=0, limit=100, max_age_s=RETENTION.build_logs_s)
    assert await load_archived_log(pool, str(old.id)) is None
    assert (await prune_once(pool, js, RETENTION)).build_logs == 0


async def test_processed_events_past_their_retention_go(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """Inbox rows of events applied 8 days ago go with a 7-day retention (the EVENTS stream
    keeps 7 days: such an event is never redelivered); a recent event's row stays and still
    makes its redelivery a duplicate."""
    build = await new_build(pool, await new_project(pool), deploy=False)
    await apply(pool, build_event(build, "cloning", at=now()))
    await pool.execute("UPDATE processed_events SET processed_at = now() - interval '8 days'")
    old = await pool.fetchval("SELECT count(*) FROM processed_events")
    await apply(pool, build_event(build, "building", at=now()), seq=424242)

    pruned = await prune_once(pool, js, RETENTION)
    assert pruned.processed_events == old >= 1
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 1
    again = await apply(pool, build_event(build, "building", at=now()), seq=424242)
    assert again.result == "duplicate"


async def exists(js: JetStreamContext, key: str) -> bool:
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    try:
        await store.get_info(key)
    except ObjectNotFoundError:
        return False
    return True


async def meta_messages(js: JetStreamContext, key: str) -> int:
    """Messages the object store keeps about `key` (its metadata, or a deletion marker)."""
    subject = f"$O.{OBJECT_STORE_ARTIFACTS}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"
    info = await js.stream_info(f"OBJ_{OBJECT_STORE_ARTIFACTS}", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def test_artifacts_are_pruned_except_what_deployments_and_rollbacks_need(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """With 2 kept per project: the active production build (old as it is), the 2 newest
    succeeded production builds, a live preview, a pending deployment's build and an unfinished
    build keep their artifacts; older production builds, an undeployed preview, a failed build
    and every build of a deleted project lose theirs; an object that is no build's stays."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    project = await new_project(pool)
    keep: dict[str, Build] = {}
    drop: dict[str, Build] = {}

    async def succeeded(build: Build) -> Build:
        await apply(pool, build_event(build, "succeeded", artifact=artifact(build), at=now()))
        return build

    live = await new_build(pool, project)
    await activate(pool, await succeed(pool, live), now())
    keep["active production #1"] = live
    drop["production #2"] = await succeeded(await new_build(pool, project, deploy=False))
    drop["production #3"] = await succeeded(await new_build(pool, project, deploy=False))
    keep["production #4"] = await succeeded(await new_build(pool, project, deploy=False))
    keep["production #5"] = await succeeded(await new_build(pool, project, deploy=False))
    preview = await new_build(pool, project, ref="feature", environment="preview")
    await activate(pool, await succeed(pool, preview), now())
    keep["live preview"] = preview
    drop["undeployed preview"] = await succeeded(
        await new_build(pool, project, ref="other", environment="preview", deploy=False)
    )
    failed = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(failed, "failed", error="boom", at=now()))
    drop["failed"] = failed
    unfinished = await new_build(pool, project, deploy=False)
    await apply(pool, build_event(unfinished, "packaging", at=now()))
    keep["unfinished (its artifact is on its way)"] = unfinished
    other = await new_project(pool)
    pending = await new_build(pool, other)
    await succeed(pool, pending)
    keep["pending deployment"] = pending
    deleted = await new_project(pool)
    drop["of a deleted project"] = await succeeded(await new_build(pool, deleted, deploy=False))
    await pool.execute("DELETE FROM projects WHERE id = $1", deleted.id)

    for build in [*keep.values(), *drop.values()]:
        await store.put(artifact_key(str(build.id)), b"release of " + str(build.id).encode())
    await store.put("notes.txt", b"not a build's")

    pruned = await prune_once(pool, js, RETENTION)

    assert set(pruned.artifacts) >= {artifact_key(str(b.id)) for b in drop.values()}
    for what, build in keep.items():
        assert await exists(js, artifact_key(str(build.id))), what
    for what, build in drop.items():
        key = artifact_key(str(build.id))
        assert not await exists(js, key), what
        assert await meta_messages(js, key) == 0, f"{what}: a deletion marker is left"
    assert await exists(js, "notes.txt")
    assert (await prune_once(pool, js, RETENTION)).artifacts == []


async def test_a_recent_artifact_stays_whatever_its_build(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """Within the minimum age (an hour by default) even a deleted project's artifact stays."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    deleted = await new_project(pool)
    build = await new_build(pool, deleted, deploy=False)
    await pool.execute("DELETE FROM projects WHERE id = $1", deleted.id)
    key = artifact_key(str(build.id))
    await store.put(key, b"just stored")
    default = Retention(RETENTION.build_logs_s, RETENTION.processed_events_s, keep_artifacts=2)
    assert key not in (await prune_once(pool, js, default)).artifacts
    assert await exists(js, key)
    assert key in (await prune_once(pool, js, RETENTION)).artifacts


async def test_one_replica_prunes_at_a_time(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """While another replica holds the lock, pruning does nothing."""
    build = await finished_build(pool, js, ago=100 * DAY)
    await archive(pool, js, build, 100 * DAY)
    async with pool.acquire() as other_replica:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        try:
            assert (await prune_once(pool, js, RETENTION)).build_logs == 0
        finally:
            await other_replica.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    assert (await prune_once(pool, js, RETENTION)).build_logs == 1


async def test_the_app_prunes_when_it_starts(
    pool: asyncpg.Pool,
    database_url: str,
    nats_url: str,
    nc: Client,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The application, with 1-day retentions, deletes an archive and inbox rows two days old
    on its own."""
    build = await finished_build(pool, js, ago=2 * DAY, lines=2)
    await archive(pool, js, build, 2 * DAY)
    await pool.execute("UPDATE processed_events SET processed_at = now() - interval '2 days'")
    # The builds of this module were never meant to reach a worker: keep them off BUILDS.
    await pool.execute("DELETE FROM outbox")
    settings = make_settings(
        database_url,
        nats_url,
        LAUNCHDECK_BUILD_LOG_RETENTION_DAYS="1",
        LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS="1",
    )
    client: TestClient[Any, Any] = ApiClient(TestServer(create_app(settings, pool, nc, js)))
    await client.start_server()
    try:

        async def pruned() -> bool:
            old_rows = await pool.fetchval(
                "SELECT count(*) FROM processed_events"
                " WHERE processed_at < now() - interval '1 day'"
            )
            return old_rows == 0 and await load_archived_log(pool, str(build.id)) is None

        await eventually("the old archive and inbox rows pruned", pruned)
    finally:
        await client.close()
