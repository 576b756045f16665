"""The audit log: every successful write and every token made or revoked is recorded with who
(token id and name) did what to which project — never a secret value, never a read; and who may
read it (`/api/v1/audit`: admins; `/api/v1/projects/{id}/audit`: the project's writers)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from launchdeck.control_api.api.audit import (
    ACTIONS,
    READ_ONLY_POSTS,
    SELF_RECORDED_PREFIXES,
    WRITE_METHODS,
)
from launchdeck.control_api.store import audit
from tests.control_api.support import Api, token, unique

AUDIT = "/api/v1/audit"


async def entries(api: Api, **params: str) -> list[dict[str, Any]]:
    reply = await api.call("GET", AUDIT, params={"limit": "200", **params})
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


async def made_token(api: Api, name: str, **body: Any) -> dict[str, Any]:
    reply = await api.call("POST", "/api/v1/tokens", {"name": name, **body})
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def test_writes_are_recorded_with_who_and_what_and_no_secret(api: Api) -> None:
    project = await api.create_project(unique("aud"))
    pid = project["id"]
    writer = await made_token(api, "ci-writer", scopes=["write"], project_id=pid)
    w = writer["token"]
    secret_value = "s3cret-" + uuid.uuid4().hex
    put = await api.call(
        "PUT", f"/api/v1/projects/{pid}/env/API_KEY", {"value": secret_value}, token=w
    )
    assert put.status == 200, put.body
    assert (
        await api.call("PATCH", f"/api/v1/projects/{pid}", {"branch": "dev"}, token=w)
    ).status == 200
    build = await api.call("POST", f"/api/v1/projects/{pid}/builds", {"deploy": False}, token=w)
    assert build.status == 202
    # Reads and refused writes leave no entry.
    assert (await api.call("GET", f"/api/v1/projects/{pid}", token=w)).status == 200
    refused = await api.call("POST", "/api/v1/projects", {"name": "x", "repo_url": "r"}, token=w)
    assert refused.status == 403

    found = await entries(api, project=pid)
    assert [e["action"] for e in found] == [
        "build.create",
        "project.update",
        "env.set",
        "token.create",
        "project.create",
    ]
    build_entry, update, env_set, token_made, created = found
    for entry in (build_entry, update, env_set):
        assert (entry["token_id"], entry["token_name"]) == (writer["id"], "ci-writer")
        assert entry["project_id"] == pid
    assert build_entry["target"] == f"/api/v1/builds/{build.body['id']}"
    assert env_set["detail"]["params"] == {"key": "API_KEY"}
    assert env_set["detail"]["fields"] == ["value"]
    assert update["detail"]["fields"] == ["branch"]
    assert token_made["target"] == writer["id"]
    assert token_made["token_name"] == "tests"
    assert created["target"] == f"/api/v1/projects/{pid}"
    everything = json.dumps(await entries(api))
    assert secret_value not in everything
    assert writer["token"] not in everything
    assert "webhook_secret" not in json.dumps(created)


async def test_tokens_made_and_revoked_are_recorded(api: Api) -> None:
    made = await made_token(api, "short-lived", scopes=["admin"])
    assert (await api.call("DELETE", f"/api/v1/tokens/{made['id']}")).status == 204
    found = [e for e in await entries(api) if e["target"] == made["id"]]
    assert [e["action"] for e in found] == ["token.revoke", "token.create"]
    assert found[1]["detail"]["scopes"] == ["admin"]
    assert found[1]["detail"]["name"] == "short-lived"
    assert made["token"] not in json.dumps(found)
    (only_revokes,) = [e for e in await entries(api, action="token.revoke") if e in found]
    assert only_revokes["action"] == "token.revoke"


async def test_webhook_entries_are_recorded_through_the_store(api: Api, pool: asyncpg.Pool) -> None:
    """The webhook receivers record their builds with `store.audit.insert` (no token id)."""
    project = await api.create_project(unique("aud"))
    async with pool.acquire() as conn:
        await audit.insert(
            conn,
            token_id=None,
            token_name="webhook:github",
            action="build.create",
            project_id=project["id"],
            target="/api/v1/builds/x",
            detail={"ref": "refs/heads/main"},
        )
    (entry, _) = await entries(api, project=project["name"])
    assert (entry["token_id"], entry["token_name"]) == (None, "webhook:github")


async def test_the_log_is_paginated_newest_first(api: Api) -> None:
    project = await api.create_project(unique("aud"))
    pid = project["id"]
    for branch in ("a", "b", "c"):
        assert (
            await api.call("PATCH", f"/api/v1/projects/{pid}", {"branch": branch})
        ).status == 200
    first = await api.call("GET", f"/api/v1/projects/{pid}/audit", params={"limit": "2"})
    assert [e["action"] for e in first.body["items"]] == ["project.update"] * 2
    second = await api.call(
        "GET",
        f"/api/v1/projects/{pid}/audit",
        params={"limit": "2", "cursor": first.body["next_cursor"]},
    )
    assert [e["action"] for e in second.body["items"]] == ["project.update", "project.create"]
    assert second.body["next_cursor"] is None
    times = [e["at"] for e in first.body["items"] + second.body["items"]]
    assert times == sorted(times, reverse=True)
    for bad in ({"cursor": "zz"}, {"limit": "0"}):
        assert (await api.call("GET", AUDIT, params=bad)).status == 422
    assert (await api.call("GET", AUDIT, params={"action": "a\x00b"})).status == 422
    assert (await api.call("GET", AUDIT, params={"project": "no-such"})).status == 404


async def test_who_may_read_the_log(api: Api) -> None:
    a = await api.create_project(unique("aud"))
    b = await api.create_project(unique("aud"))
    path = f"/api/v1/projects/{a['id']}/audit"
    writer = token(["write"], project_id=a["id"])
    reply = await api.call("GET", path, token=writer)
    assert reply.status == 200
    assert {e["project_id"] for e in reply.body["items"]} == {a["id"]}
    deployer = token(["read", "deploy"], project_id=a["id"])
    assert (await api.call("GET", path, token=deployer)).status == 403
    assert (await api.call("GET", path, token=token(["write"], project_id=b["id"]))).status == 404
    assert (await api.call("GET", AUDIT, token=writer)).status == 403


def test_every_audited_write_route_has_an_action_name(api: Api) -> None:
    """A new write route gets a readable action name here, not the `<method> <route>` fallback."""
    writes = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        if r.resource is not None
        and r.method in WRITE_METHODS
        and r.resource.canonical.startswith("/api/v1/")
        and not r.resource.canonical.startswith(SELF_RECORDED_PREFIXES)
    }
    writes -= READ_ONLY_POSTS
    assert writes - set(ACTIONS) == set()
    assert set(ACTIONS) - writes == set()
