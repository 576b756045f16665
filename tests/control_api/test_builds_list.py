"""`GET /api/v1/projects/{id}/builds`, the API's hottest read: the project and its page come
from one query and rows are presented without a `Build` in between, so these pin that it shows
exactly what `GET /api/v1/builds/{id}` shows, and answers errors in the same order as before."""

from __future__ import annotations

import uuid

import asyncpg

from tests.control_api.support import Api, token, unique


async def test_list_shows_each_build_as_its_detail_does(api: Api, pool: asyncpg.Pool) -> None:
    """Every item equals the build's own `GET /api/v1/builds/{id}`, with and without an
    artifact, whether the project is named by id or by name."""
    project = await api.create_project(unique("listed"))
    created = []
    for _ in range(3):
        reply = await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})
        assert reply.status == 202, reply.body
        created.append(reply.body)
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE builds SET status = 'succeeded', artifact_key = 'k/1', artifact_sha256 = $2,
                   artifact_size = 123, artifact_kind = 'process', start_command = 'run',
                   finished_at = now(), commit_sha = 'abc', commit_message = 'msg'
               WHERE id = $1""",
            uuid.UUID(created[0]["id"]),
            "0" * 64,
        )
        await conn.execute(
            "UPDATE builds SET artifact_key = 'k/2', artifact_sha256 = $2, artifact_size = 5 "
            "WHERE id = $1",
            uuid.UUID(created[1]["id"]),
            "1" * 64,
        )
    details = [(await api.call("GET", f"/api/v1/builds/{b['id']}")).body for b in created]
    assert details[0]["artifact"] == {
        "key": "k/1", "sha256": "0" * 64, "size": 123, "kind": "process"
    }  # fmt: skip
    assert details[1]["artifact"]["kind"] == "static"
    assert details[2]["artifact"] is None
    for key in (project["id"], project["name"]):
        reply = await api.call("GET", f"/api/v1/projects/{key}/builds")
        assert reply.status == 200, reply.body
        assert reply.body == {"items": details[::-1], "next_cursor": None}


async def test_project_without_builds_and_unknown_projects(api: Api) -> None:
    project = await api.create_project(unique("empty"))
    for key in (project["id"], project["name"]):
        reply = await api.call("GET", f"/api/v1/projects/{key}/builds")
        assert reply.status == 200, reply.body
        assert reply.body == {"items": [], "next_cursor": None}
    for key in (str(uuid.uuid4()), unique("nobody"), "Not A Name!", "x" * 300):
        reply = await api.call("GET", f"/api/v1/projects/{key}/builds")
        assert reply.status == 404, (key, reply.body)
        assert reply.body["detail"] == f"no project {key!r}"


async def test_scope_is_checked_before_paging_errors(api: Api) -> None:
    """Another project's token gets 404 whatever its paging says; the project's own reader
    gets the paging's 422."""
    project = await api.create_project(unique("paged"))
    await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})
    other = await api.create_project(unique("other"))
    foreign = token(["read"], project_id=other["id"])
    reader = token(["read"], project_id=project["id"])
    path = f"/api/v1/projects/{project['id']}/builds"
    for params in ({}, {"cursor": "nope"}, {"limit": "0"}, {"limit": "x"}):
        reply = await api.call("GET", path, params=params, token=foreign)
        assert reply.status == 404, (params, reply.body)
    reply = await api.call("GET", path, token=reader)
    assert reply.status == 200
    assert len(reply.body["items"]) == 1
    for params, field in (({"cursor": "nope"}, "cursor"), ({"limit": "0"}, "limit")):
        reply = await api.call("GET", path, params=params, token=reader)
        assert reply.status == 422, (params, reply.body)
        assert [e["field"] for e in reply.body["errors"]] == [field]
    missing = await api.call("GET", f"/api/v1/projects/{uuid.uuid4()}/builds?cursor=nope")
    assert missing.status == 404
