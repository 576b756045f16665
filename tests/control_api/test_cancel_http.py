"""`POST /api/v1/builds/{id}/cancel`: a queued build is cancelled at once (its mark in the
`cancellations` bucket, its log ended, its event in the outbox); a running build's workers are
told (core NATS, heard by the build-worker's own NATS user) and it ends `cancelled` when its
worker says so; a finished build is a 409 and leaves no mark. The real app, Postgres and NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildCancelRequested, BuildStatusChanged
from launchdeck.contracts.subjects import (
    KV_CANCELLATIONS,
    SUBJECT_BUILD_CANCEL,
    build_event_subject,
)
from launchdeck.control_api.domain.abandoned_jobs import judge_stuck_build
from launchdeck.control_api.domain.builds import cancel_build
from launchdeck.control_api.store.records import Build
from launchdeck.libs.jetstream import connect
from launchdeck.libs.nats_access import access_of
from tests.control_api.helpers import apply, build_event, get_build, new_build, new_project
from tests.control_api.log_support import AUTH, receive_frame
from tests.control_api.support import Api, token
from tests.nats_auth import login_url
from tests.polling import eventually


async def as_service(nats_url: str, user: str) -> Client:
    """A connection as the platform's service `user`, with its own inbox, as services connect."""
    access = access_of(user)
    assert access is not None
    return await connect(
        login_url(nats_url, user), name=access.service, inbox_prefix=access.inbox_prefix
    )


@pytest_asyncio.fixture(loop_scope="session")
async def worker_nc(nats_url: str) -> AsyncIterator[Client]:
    """The build-worker's NATS user: what it may hear is what the workers hear."""
    nc = await as_service(nats_url, "build-worker")
    try:
        yield nc
    finally:
        await nc.close()


async def cancel_mark(js: JetStreamContext, build_id: uuid.UUID) -> BuildCancelRequested | None:
    bucket = await js.key_value(KV_CANCELLATIONS)
    try:
        entry = await bucket.get(str(build_id))
    except KeyNotFoundError:
        return None
    return decode(entry.value or b"", BuildCancelRequested)


async def outbox_events(pool: asyncpg.Pool, build: Build) -> list[BuildStatusChanged]:
    subject = build_event_subject(str(build.project_id), str(build.id))
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE subject = $1", subject)
    return [decode(bytes(r["payload"]), BuildStatusChanged) for r in rows]


async def test_cancelling_a_queued_build_ends_it_at_once(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """202 with the build `cancelled` (reason `cancelled`); the mark is in the bucket for the
    worker that pulls the job later; a viewer following its log gets `■ Cancelled before it
    started` and the end; the `cancelled` event waits in the outbox for project viewers."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    viewer = await api.client.ws_connect(f"/api/v1/builds/{build.id}/logs/ws", headers=AUTH)

    reply = await api.call("POST", f"/api/v1/builds/{build.id}/cancel")
    assert reply.status == 202, reply.body
    body: dict[str, Any] = reply.body
    assert (body["status"], body["reason"]) == ("cancelled", "cancelled")
    assert body["error"] == "Cancelled on request before it started"
    assert body["cancel_requested_at"] is not None
    assert body["finished_at"] is not None
    assert (await api.call("GET", f"/api/v1/builds/{build.id}")).body == body

    mark = await cancel_mark(js, build.id)
    assert mark is not None
    assert mark.project_id == str(project.id)
    frames = [await receive_frame(viewer), await receive_frame(viewer)]
    assert [(f["type"], f.get("line"), f.get("status")) for f in frames] == [
        ("log", "■ Cancelled before it started", None),
        ("end", None, "cancelled"),
    ]
    await viewer.close()
    text = await api.call("GET", f"/api/v1/builds/{build.id}/logs")
    assert text.body == "■ Cancelled before it started\n"
    [event] = await outbox_events(pool, build)
    assert (event.status, event.reason) == ("cancelled", "cancelled")

    again = await api.call("POST", f"/api/v1/builds/{build.id}/cancel")
    assert again.status == 409
    assert again.body["detail"] == "build #1 has already finished: cancelled"


async def test_cancelling_a_running_build_tells_every_worker(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext, worker_nc: Client
) -> None:
    """A building build: 202 with it still `building` and `cancel_requested_at` set; the word
    reaches the build-worker's user on `ld.control.build.cancel` and the mark is in the bucket;
    the build ends `cancelled` when its worker reports it, and stays so."""
    heard: asyncio.Queue[BuildCancelRequested] = asyncio.Queue()

    async def on_word(msg: Msg) -> None:
        await heard.put(decode(msg.data, BuildCancelRequested))

    sub = await worker_nc.subscribe(SUBJECT_BUILD_CANCEL, cb=on_word)
    await worker_nc.flush()
    project = await new_project(pool)
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "building", step="build"))

    reply = await api.call("POST", f"/api/v1/builds/{build.id}/cancel")
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "building"
    assert reply.body["cancel_requested_at"] is not None
    word = await asyncio.wait_for(heard.get(), 5)
    await sub.unsubscribe()
    assert (word.build_id, word.project_id) == (str(build.id), str(project.id))
    assert await cancel_mark(js, build.id) == word
    assert await outbox_events(pool, build) == []  # the worker reports the end

    # A second request while it stops: accepted again, the first request's time kept.
    second = await api.call("POST", f"/api/v1/builds/{build.id}/cancel")
    assert second.status == 202
    assert second.body["cancel_requested_at"] == reply.body["cancel_requested_at"]

    stopped = build_event(
        build,
        "cancelled",
        step="build",
        error="Cancelled on request",
        reason="cancelled",
    )
    assert (await apply(pool, stopped)).applied
    done = await get_build(pool, build.id)
    assert (done.status, done.reason, done.step) == ("cancelled", "cancelled", "build")
    assert done.finished_at is not None
    late = await apply(pool, build_event(build, "succeeded"))
    assert not late.applied
    assert (await get_build(pool, build.id)).status == "cancelled"


async def test_a_finished_build_cannot_be_cancelled(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """409 for a succeeded or failed build, and no mark is written."""
    project = await new_project(pool)
    for status in ("succeeded", "failed"):
        build = await new_build(pool, project, deploy=False)
        await apply(pool, build_event(build, status))
        reply = await api.call("POST", f"/api/v1/builds/{build.id}/cancel")
        assert reply.status == 409, reply.body
        assert reply.body["detail"].endswith(f"has already finished: {status}")
        assert await cancel_mark(js, build.id) is None


async def test_cancel_needs_the_deploy_scope_of_the_project(api: Api, pool: asyncpg.Pool) -> None:
    """A read-only token of the project: 403; another project's token and an unknown or
    malformed id: 404; a deploy token of the project: 202."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    path = f"/api/v1/builds/{build.id}/cancel"
    reader = token(["read"], project_id=str(project.id))
    assert (await api.call("POST", path, token=reader)).status == 403
    stranger = token(["deploy"], project_id=str(uuid.uuid4()))
    assert (await api.call("POST", path, token=stranger)).status == 404
    assert (await api.call("POST", f"/api/v1/builds/{uuid.uuid4()}/cancel")).status == 404
    assert (await api.call("POST", "/api/v1/builds/not-a-uuid/cancel")).status == 404
    deployer = token(["deploy"], project_id=str(project.id))
    assert (await api.call("POST", path, token=deployer)).status == 202


async def test_a_timed_out_build_shows_reason_timeout(api: Api, pool: asyncpg.Pool) -> None:
    """The worker's `failed` event with reason `timeout` is what the API shows."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "building", step="build"))
    error = (
        "Timed out: the build's time limit of 3s was reached while running `npm run build`; "
        "its processes were killed"
    )
    await apply(pool, build_event(build, "failed", step="build", error=error, reason="timeout"))
    shown = (await api.call("GET", f"/api/v1/builds/{build.id}")).body
    assert (shown["status"], shown["reason"], shown["step"], shown["error"]) == (
        "failed",
        "timeout",
        "build",
        error,
    )
    assert shown["cancel_requested_at"] is None


async def test_cancelled_builds_are_counted(api: Api, pool: asyncpg.Pool) -> None:
    """`launchdeck_builds{status="cancelled"}` counts them."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    assert (await api.call("POST", f"/api/v1/builds/{build.id}/cancel")).status == 202

    async def counted() -> bool:
        page: str = (await api.call("GET", "/metrics", token="")).body
        return any(
            line.startswith('launchdeck_builds{status="cancelled"} ')
            and float(line.split()[1]) >= 1
            for line in page.splitlines()
        )

    await eventually("cancelled builds in /metrics", counted)


async def test_a_cancel_no_worker_confirms_ends_cancelled_by_the_sweep(pool: asyncpg.Pool) -> None:
    """The worker of a build whose cancel was asked for died for good: the stuck-jobs sweep (and
    the max-deliveries verdict) ends it `cancelled`, not `failed`, and its log with it."""
    project = await new_project(pool)
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "building", step="build"))
    async with pool.acquire() as conn:
        await cancel_build(conn, build.id, now=datetime.now(UTC))
    asked = await get_build(pool, build.id)
    verdict = judge_stuck_build(asked, datetime.now(UTC) + timedelta(hours=2))
    assert verdict.event is not None
    assert isinstance(verdict.event, BuildStatusChanged)
    assert (verdict.event.status, verdict.event.reason) == ("cancelled", "cancelled")
    assert verdict.event.error is not None
    assert verdict.event.error.startswith(
        "Cancelled on request; the build-worker stopped reporting"
    )
    assert verdict.log_eof is not None
    assert verdict.log_eof.status == "cancelled"
    assert (await apply(pool, verdict.event)).applied
    assert (await get_build(pool, build.id)).status == "cancelled"
