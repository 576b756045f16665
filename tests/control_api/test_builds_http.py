"""Triggering builds: the build row and its BuildRequested commit together; the relay publishes
exactly one command per build, deduplicated by Nats-Msg-Id."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildRequested
from launchdeck.contracts.subjects import STREAM_BUILDS, SUBJECT_BUILD_JOBS
from launchdeck.libs.outbox import OutboxRelay
from tests.control_api.support import Api, token, unique

BUILD_FIELDS = {
    "id", "project_id", "number", "ref", "commit_sha", "status", "step", "attempt", "error",
    "trigger", "created_at", "started_at", "finished_at", "deployment_id",
}  # fmt: skip


async def test_trigger_writes_build_and_outbox_row(api: Api, pool: asyncpg.Pool) -> None:
    """POST …/builds answers 202 with a queued build; its BuildRequested waits in the outbox."""
    project = await api.create_project(unique("build"), build={"output_dir": "public"})
    reply = await api.call("POST", f"/api/v1/projects/{project['name']}/builds")
    assert reply.status == 202, reply.body
    build = reply.body
    assert set(build) >= BUILD_FIELDS
    assert build["status"] == "queued"
    assert build["number"] == 1
    assert build["ref"] == "main"
    assert build["environment"] == "production"
    assert build["deploy"] is True
    assert build["trigger"] == "api"
    assert build["started_at"] is None
    assert reply.headers["Location"] == f"/api/v1/builds/{build['id']}"

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", uuid.UUID(build["id"])
        )
    assert row is not None
    assert row["subject"] == SUBJECT_BUILD_JOBS
    command = decode(bytes(row["payload"]), BuildRequested)
    assert command.build_id == build["id"]
    assert command.project_name == project["name"]
    assert command.repo_url == project["repo_url"]
    assert command.ref == "main"
    assert command.number == 1
    assert command.config.output_dir == "public"

    fetched = await api.call("GET", f"/api/v1/builds/{build['id']}")
    assert fetched.status == 200
    assert fetched.body == build


async def test_build_and_command_are_atomic(api: Api, pool: asyncpg.Pool) -> None:
    """When the outbox insert fails, no build row is left and the number is not consumed."""
    name = unique("atomic")
    project = await api.create_project(name)
    async with pool.acquire() as conn:
        await conn.execute(
            """ALTER TABLE outbox ADD CONSTRAINT refuse_builds
               CHECK (subject <> 'ld.jobs.build') NOT VALID"""
        )
    try:
        failed = await api.call("POST", f"/api/v1/projects/{name}/builds", {})
        assert failed.status == 500
        assert failed.body["detail"] == "an unexpected error occurred"  # no internals leak
    finally:
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE outbox DROP CONSTRAINT refuse_builds")
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM builds WHERE project_id = $1", uuid.UUID(project["id"])
        )
    assert count == 0
    ok = await api.call("POST", f"/api/v1/projects/{name}/builds", {})
    assert ok.body["number"] == 1


async def test_environment_follows_the_ref(api: Api) -> None:
    """The project branch builds for production, another ref for preview, unless told."""
    name = unique("env")
    await api.create_project(name, branch="main")
    path = f"/api/v1/projects/{name}/builds"
    main = await api.call("POST", path, {"ref": "main"})
    feature = await api.call("POST", path, {"ref": "feature/x", "deploy": False})
    forced = await api.call("POST", path, {"ref": "v1.2.0", "environment": "production"})
    assert [b.body["environment"] for b in (main, feature, forced)] == [
        "production",
        "preview",
        "production",
    ]
    assert feature.body["deploy"] is False
    assert [b.body["number"] for b in (main, feature, forced)] == [1, 2, 3]


async def test_trigger_validates_its_body(api: Api) -> None:
    """Wrong types, bad refs and unknown fields are 422 problems naming the field."""
    name = unique("badbody")
    await api.create_project(name)
    path = f"/api/v1/projects/{name}/builds"
    for body, field in [
        ({"deploy": "yes"}, "deploy"),
        ({"ref": "has space"}, "ref"),
        ({"ref": "--upload-pack=/bin/sh"}, "ref"),  # would read as an option
        ({"ref": "main..evil"}, "ref"),
        ({"environment": "staging"}, "environment"),
        ({"deplyo": False}, "deplyo"),
    ]:
        reply = await api.call("POST", path, body)
        assert reply.status == 422, (body, reply.body)
        assert reply.body["errors"][0]["field"] == field
        if field == "ref":
            assert reply.body["errors"][0]["message"].startswith("must be a git branch, tag or")
    assert (await api.call("POST", f"/api/v1/projects/{unique('ghost')}/builds", {})).status == 404


async def test_relay_publishes_one_command_with_msg_id(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The relay publishes the BuildRequested once, with Nats-Msg-Id = build id; a retried
    publish of the same row (a crash before the delete) is deduplicated by the stream."""
    relay = OutboxRelay(pool, js)
    while await relay.relay_once():  # what earlier tests left behind
        pass
    name = unique("relay")
    await api.create_project(name)
    build = (await api.call("POST", f"/api/v1/projects/{name}/builds", {})).body
    before = (await js.stream_info(STREAM_BUILDS)).state.messages
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM outbox WHERE id = $1", uuid.UUID(build["id"])
        )

    assert await relay.relay_once() == 1
    after = (await js.stream_info(STREAM_BUILDS)).state
    assert after.messages == before + 1
    stored = await js.get_msg(STREAM_BUILDS, after.last_seq)
    assert stored.subject == SUBJECT_BUILD_JOBS
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == build["id"]
    assert msgspec.json.decode(stored.data, type=BuildRequested).build_id == build["id"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        # Simulate a relay that published but crashed before deleting the row.
        await conn.execute(
            "INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)",
            uuid.UUID(build["id"]),
            SUBJECT_BUILD_JOBS,
            payload,
        )
    assert await relay.relay_once() == 1
    assert (await js.stream_info(STREAM_BUILDS)).state.messages == before + 1


async def test_list_builds_newest_first_with_cursor(api: Api) -> None:
    """A project's builds come newest first, in pages that follow `next_cursor`."""
    name = unique("history")
    await api.create_project(name)
    for _ in range(5):
        await api.call("POST", f"/api/v1/projects/{name}/builds", {"deploy": False})
    numbers: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        reply = await api.call("GET", f"/api/v1/projects/{name}/builds", params=params)
        assert reply.status == 200
        numbers += [b["number"] for b in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert numbers == [5, 4, 3, 2, 1]


async def test_build_lookup_errors_and_scopes(api: Api) -> None:
    """Unknown or malformed build ids are 404; another project's token gets 404 too."""
    name = unique("scope")
    project = await api.create_project(name)
    build = (await api.call("POST", f"/api/v1/projects/{name}/builds", {})).body
    assert (await api.call("GET", "/api/v1/builds/not-a-uuid")).status == 404
    assert (await api.call("GET", f"/api/v1/builds/{uuid.uuid4()}")).status == 404
    other = await api.create_project(unique("other"))
    foreign = token(["read", "deploy"], project_id=other["id"])
    assert (await api.call("GET", f"/api/v1/builds/{build['id']}", token=foreign)).status == 404
    own_reader = token(["read"], project_id=project["id"])
    assert (await api.call("GET", f"/api/v1/builds/{build['id']}", token=own_reader)).status == 200
    trigger = await api.call("POST", f"/api/v1/projects/{name}/builds", {}, token=own_reader)
    assert trigger.status == 403
    deployer = token(["deploy"], project_id=project["id"])
    trigger = await api.call("POST", f"/api/v1/projects/{name}/builds", {}, token=deployer)
    assert trigger.status == 202
