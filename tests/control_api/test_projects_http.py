"""HTTP API of projects: create, read by id or name, validation, conflicts, auth, pagination."""

from __future__ import annotations

import uuid

import asyncpg

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import UndeployRequested
from launchdeck.contracts.subjects import SUBJECT_DEPLOY_JOBS, SUBJECT_UNDEPLOY_JOBS
from tests.control_api.support import Api, token, unique

PROBLEM = "application/problem+json"


async def test_create_then_get_by_name_and_id(api: Api) -> None:
    """POST returns 201 with the webhook secret once; GET by name or id returns the project."""
    name = unique("site")
    created = await api.create_project(
        name, branch="trunk", domains=["www.example.com"], build={"output_dir": "dist"}
    )
    assert created["name"] == name
    assert created["branch"] == "trunk"
    assert created["domains"] == ["www.example.com"]
    assert created["build"] == {"output_dir": "dist"}
    assert len(created["webhook_secret"]) >= 32
    assert created["created_at"].endswith("Z")
    uuid.UUID(created["id"])

    by_name = await api.call("GET", f"/api/v1/projects/{name}")
    by_id = await api.call("GET", f"/api/v1/projects/{created['id']}")
    assert by_name.status == by_id.status == 200
    assert by_name.body == by_id.body
    assert "webhook_secret" not in by_name.body
    assert by_name.body["id"] == created["id"]


async def test_defaults_are_applied(api: Api) -> None:
    """Branch defaults to main, no build overrides and no domains."""
    created = await api.create_project(unique("plain"))
    assert created["branch"] == "main"
    assert created["build"] == {}
    assert created["domains"] == []


async def test_name_must_be_a_slug(api: Api) -> None:
    """A name that is not a slug is a 422 problem naming the field."""
    for bad in ["Not A Slug!", "-leading-dash", "UPPER", "a" * 64, ""]:
        reply = await api.call(
            "POST", "/api/v1/projects", {"name": bad, "repo_url": "https://x.invalid/r.git"}
        )
        assert reply.status == 422, (bad, reply.body)
        assert reply.content_type.startswith(PROBLEM)
        assert reply.body["status"] == 422
        assert reply.body["title"]
        assert reply.body["errors"][0]["field"] == "name"
        assert "slug" in reply.body["errors"][0]["message"]


async def test_validation_names_nested_and_missing_fields(api: Api) -> None:
    """Missing, mistyped, unknown and nested fields are reported with their path."""
    cases = [
        ({"name": "ok"}, "repo_url", "is required"),
        ({"name": "ok", "repo_url": 5}, "repo_url", "Expected `str`"),
        ({"name": "ok", "repo_url": "r", "colour": "red"}, "colour", "not a known field"),
        ({"name": "ok", "repo_url": "r", "build": {"timeout_s": 0}}, "build.timeout_s", ">= 1"),
        ({"name": "ok", "repo_url": "r", "build": {"output_dir": "../x"}}, "build.output_dir", ""),
        ({"name": "ok", "repo_url": "r", "domains": ["fine.dev", "Bad Host"]}, "domains[1]", ""),
    ]
    for body, field, message in cases:
        reply = await api.call("POST", "/api/v1/projects", body)
        assert reply.status == 422, (body, reply.body)
        assert reply.body["errors"] == [
            {"field": field, "message": reply.body["errors"][0]["message"]}
        ]
        assert message in reply.body["errors"][0]["message"]


async def test_pattern_errors_say_what_is_expected(api: Api) -> None:
    """A bad branch or domain gets a sentence, not the regular expression behind it."""
    cases = [
        ({"branch": "../../etc"}, "branch", "must be a git branch, tag or commit: no spaces"),
        ({"branch": "-x"}, "branch", "must be a git branch, tag or commit: no spaces"),
        ({"domains": ["ok.dev", "Not A Host"]}, "domains[1]", "must be a lowercase host name"),
    ]
    for extra, field, message in cases:
        body = {"name": unique("pat"), "repo_url": "https://x.invalid/r.git", **extra}
        reply = await api.call("POST", "/api/v1/projects", body)
        assert reply.status == 422, (body, reply.body)
        [error] = reply.body["errors"]
        assert error["field"] == field
        assert error["message"].startswith(message)
        assert "regex" not in error["message"]


async def test_malformed_json_is_400(api: Api) -> None:
    """A body that is not JSON is a 400 problem, not a 500."""
    reply = await api.call(
        "POST",
        "/api/v1/projects",
        data=b'{"name": "x", ',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400
    assert reply.content_type.startswith(PROBLEM)
    assert "JSON" in reply.body["detail"]


async def test_duplicate_name_is_409(api: Api) -> None:
    """A second project with the same name is a 409 problem."""
    name = unique("dup")
    await api.create_project(name)
    reply = await api.call("POST", "/api/v1/projects", {"name": name, "repo_url": "r"})
    assert reply.status == 409
    assert reply.content_type.startswith(PROBLEM)
    assert name in reply.body["detail"]


async def test_missing_or_bad_token_is_401(api: Api) -> None:
    """No token, a malformed token, a token signed with another key: 401 problems."""
    assert (await api.call("GET", "/api/v1/projects", token="")).status == 401
    api.token = None
    no_token = await api.call("GET", "/api/v1/projects")
    assert no_token.status == 401
    assert no_token.content_type.startswith(PROBLEM)
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.call("GET", "/api/v1/projects", token="not-a-jwt")).status == 401
    from launchdeck.libs.tokens import mint

    foreign, _ = mint("another-secret-of-at-least-32-bytes!", subject="admin", scopes=["admin"])
    assert (await api.call("GET", "/api/v1/projects", token=foreign)).status == 401
    basic = await api.call("GET", "/api/v1/projects", headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401
    # Probes need no token; a token in the query string works (WebSocket viewers).
    assert (await api.call("GET", "/health")).status == 200
    query = await api.call("GET", "/api/v1/projects", params={"token": token(["admin"])})
    assert query.status == 200


async def test_unknown_route_and_wrong_method_are_problems(api: Api) -> None:
    """An unknown path is a 404 problem; a wrong method a 405 problem with Allow."""
    missing = await api.call("GET", "/api/v1/nothing-here")
    assert missing.status == 404
    assert missing.content_type.startswith(PROBLEM)
    wrong = await api.call("PUT", "/api/v1/projects")
    assert wrong.status == 405
    assert wrong.content_type.startswith(PROBLEM)
    assert "POST" in wrong.headers["Allow"]
    unknown = await api.call("GET", f"/api/v1/projects/{uuid.uuid4()}")
    assert unknown.status == 404
    assert unknown.content_type.startswith(PROBLEM)


async def test_patch_and_delete(api: Api, pool: asyncpg.Pool) -> None:
    """PATCH changes only the given fields, refuses a rename; DELETE removes the project and,
    in the same transaction, asks the deploy-engine to stop serving it."""
    name = unique("edit")
    created = await api.create_project(name, domains=["a.example.com"])
    reply = await api.call(
        "PATCH", f"/api/v1/projects/{name}", {"branch": "release", "build": {"root_dir": "web"}}
    )
    assert reply.status == 200, reply.body
    assert reply.body["branch"] == "release"
    assert reply.body["build"] == {"root_dir": "web"}
    assert reply.body["domains"] == ["a.example.com"]
    assert reply.body["updated_at"] > created["updated_at"]

    # Nothing live yet: new domains wait for the first deployment (no deploy command).
    moved = await api.call("PATCH", f"/api/v1/projects/{name}", {"domains": ["b.example.com"]})
    assert (moved.status, moved.body["domains"]) == (200, ["b.example.com"])
    async with pool.acquire() as conn:
        deploys = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE subject = $1 AND convert_from(payload, 'UTF8')"
            " LIKE $2",
            SUBJECT_DEPLOY_JOBS,
            f"%{created['id']}%",
        )
    assert deploys == 0

    rename = await api.call("PATCH", f"/api/v1/projects/{name}", {"name": "other"})
    assert rename.status == 422
    assert rename.body["errors"][0]["field"] == "name"

    assert (await api.call("DELETE", f"/api/v1/projects/{name}")).status == 204
    assert (await api.call("GET", f"/api/v1/projects/{name}")).status == 404
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload FROM outbox WHERE subject = $1", SUBJECT_UNDEPLOY_JOBS
        )
    commands = [decode(bytes(row["payload"]), UndeployRequested) for row in rows]
    assert [(c.project_id, c.project_name) for c in commands if c.project_name == name] == [
        (created["id"], name)
    ]
    assert (await api.call("DELETE", f"/api/v1/projects/{name}")).status == 404


async def test_list_paginates_with_a_cursor(api: Api) -> None:
    """Pages of `limit` projects, in name order, follow `next_cursor` to the end."""
    prefix = unique("page")
    names = sorted(f"{prefix}-{i}" for i in range(5))
    for name in names:
        await api.create_project(name)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        reply = await api.call("GET", "/api/v1/projects", params=params)
        assert reply.status == 200
        assert len(reply.body["items"]) <= 2
        seen += [p["name"] for p in reply.body["items"]]
        pages += 1
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert [n for n in seen if n.startswith(prefix)] == names
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert pages == -(-len(seen) // 2)  # no empty trailing page


async def test_bad_paging_parameters_are_422(api: Api) -> None:
    """A limit out of range or a forged cursor is a 422 naming the parameter."""
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),  # a valid encoding of the wrong shape
    ]:
        reply = await api.call("GET", "/api/v1/projects", params=params)
        assert reply.status == 422, (params, reply.body)
        assert reply.body["errors"][0]["field"] == field


async def test_project_scoped_token_sees_only_its_project(api: Api) -> None:
    """A token for project A reads A, gets 404 for B, lists only A, cannot create projects."""
    a = await api.create_project(unique("scoped-a"))
    b = await api.create_project(unique("scoped-b"))
    scoped = token(["read"], project_id=a["id"])
    assert (await api.call("GET", f"/api/v1/projects/{a['name']}", token=scoped)).status == 200
    other = await api.call("GET", f"/api/v1/projects/{b['name']}", token=scoped)
    assert other.status == 404
    listed = await api.call("GET", "/api/v1/projects", token=scoped)
    assert [p["id"] for p in listed.body["items"]] == [a["id"]]
    create = await api.call(
        "POST", "/api/v1/projects", {"name": unique("nope"), "repo_url": "r"}, token=scoped
    )
    assert create.status == 403
    # `read` does not allow changes; `write` does.
    patch = await api.call("PATCH", f"/api/v1/projects/{a['id']}", {"branch": "x"}, token=scoped)
    assert patch.status == 403
    writer = token(["write"], project_id=a["id"])
    patch = await api.call("PATCH", f"/api/v1/projects/{a['id']}", {"branch": "x"}, token=writer)
    assert patch.status == 200
