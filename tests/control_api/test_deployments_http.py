"""HTTP API of deployments: history, detail, deploying a chosen build, rollback."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import DeployRequested
from tests.control_api.helpers import T0, activate, apply, build_event, get_build, succeed
from tests.control_api.support import Api, token, unique

DEPLOYMENT_FIELDS = {
    "id", "project_id", "build_id", "environment", "status", "url", "error", "created_at",
    "activated_at",
}  # fmt: skip


async def trigger(api: Api, project: str, **body: object) -> dict[str, object]:
    reply = await api.call("POST", f"/api/v1/projects/{project}/builds", body)
    assert reply.status == 202, reply.body
    return dict(reply.body)


async def test_history_newest_first_with_statuses(api: Api, pool: asyncpg.Pool) -> None:
    """Deployments list newest first with timestamps and statuses; detail matches the list."""
    name = unique("hist")
    await api.create_project(name)
    ids = []
    for i in range(3):
        build = await get_build(pool, uuid.UUID(str((await trigger(api, name))["id"])))
        deployment = await succeed(pool, build)
        await activate(pool, deployment, T0 + timedelta(minutes=i))
        ids.append(str(deployment.id))
    reply = await api.call("GET", f"/api/v1/projects/{name}/deployments")
    assert reply.status == 200
    items = reply.body["items"]
    assert reply.body["next_cursor"] is None
    assert [d["id"] for d in items] == ids[::-1]
    assert [d["status"] for d in items] == ["active", "superseded", "superseded"]
    assert all(set(d) >= DEPLOYMENT_FIELDS for d in items)
    assert all(d["created_at"] and d["activated_at"] for d in items)
    detail = await api.call("GET", f"/api/v1/deployments/{ids[-1]}")
    assert detail.body == items[0]

    # The build shows the deployment it created.
    newest = await api.call("GET", f"/api/v1/builds/{items[0]['build_id']}")
    assert newest.body["deployment_id"] == ids[-1]
    assert newest.body["status"] == "succeeded"
    assert newest.body["artifact"]["sha256"] == "ab" * 32

    pages: list[str] = []
    cursor = None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = await api.call("GET", f"/api/v1/projects/{name}/deployments", params=params)
        pages += [d["id"] for d in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert pages == ids[::-1]


async def test_deploy_a_chosen_build(api: Api, pool: asyncpg.Pool) -> None:
    """A succeeded build can be deployed (202 + DeployRequested); others are refused."""
    name = unique("promote")
    await api.create_project(name, domains=["promo.example.com"])
    preview = await get_build(pool, uuid.UUID(str((await trigger(api, name, ref="topic"))["id"])))
    await succeed(pool, preview)
    path = f"/api/v1/projects/{name}/deployments"

    reply = await api.call("POST", path, {"build_id": str(preview.id)})
    assert reply.status == 202, reply.body
    assert reply.body["environment"] == "production"
    assert reply.body["status"] == "pending"
    assert reply.body["build_id"] == str(preview.id)
    assert reply.headers["Location"] == f"/api/v1/deployments/{reply.body['id']}"
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM outbox WHERE id = $1", uuid.UUID(reply.body["id"])
        )
    command = decode(bytes(payload), DeployRequested)
    assert command.environment == "production"
    assert command.project_name == name
    assert command.domains == ["promo.example.com"]
    assert command.artifact.sha256 == "ab" * 32

    running = await get_build(pool, uuid.UUID(str((await trigger(api, name))["id"])))
    await apply(pool, build_event(running, "building"))
    busy = await api.call("POST", path, {"build_id": str(running.id)})
    assert busy.status == 409
    assert "building" in busy.body["detail"]

    unknown = await api.call("POST", path, {"build_id": str(uuid.uuid4())})
    assert unknown.status == 422
    assert unknown.body["errors"][0]["field"] == "build_id"
    malformed = await api.call("POST", path, {"build_id": "nope"})
    assert malformed.status == 422
    assert malformed.body["errors"][0]["field"] == "build_id"
    other = await api.create_project(unique("elsewhere"))
    foreign = await api.call(
        "POST", f"/api/v1/projects/{other['name']}/deployments", {"build_id": str(preview.id)}
    )
    assert foreign.status == 422


async def test_rollback_endpoint(api: Api, pool: asyncpg.Pool) -> None:
    """Rollback is 409 without an earlier deployment, else 202 with a deployment of the
    previous production build."""
    name = unique("rb")
    await api.create_project(name)
    path = f"/api/v1/projects/{name}/rollback"
    assert (await api.call("POST", path)).status == 409
    first = await get_build(pool, uuid.UUID(str((await trigger(api, name))["id"])))
    await activate(pool, await succeed(pool, first), T0)
    none_yet = await api.call("POST", path)
    assert none_yet.status == 409
    assert none_yet.content_type.startswith("application/problem+json")
    second = await get_build(pool, uuid.UUID(str((await trigger(api, name))["id"])))
    await activate(pool, await succeed(pool, second), T0 + timedelta(minutes=1))

    reply = await api.call("POST", path)
    assert reply.status == 202, reply.body
    assert reply.body["build_id"] == str(first.id)
    assert reply.body["environment"] == "production"
    assert reply.body["status"] == "pending"
    assert reply.body["trigger"] == "rollback"


async def test_deployment_lookup_errors_and_scopes(api: Api, pool: asyncpg.Pool) -> None:
    """Unknown deployments are 404; another project's token sees 404; `read` cannot deploy."""
    name = unique("depscope")
    project = await api.create_project(name)
    build = await get_build(pool, uuid.UUID(str((await trigger(api, name))["id"])))
    deployment = await succeed(pool, build)
    assert (await api.call("GET", "/api/v1/deployments/xyz")).status == 404
    assert (await api.call("GET", f"/api/v1/deployments/{uuid.uuid4()}")).status == 404
    other = await api.create_project(unique("depother"))
    foreign = token(["read"], project_id=other["id"])
    assert (
        await api.call("GET", f"/api/v1/deployments/{deployment.id}", token=foreign)
    ).status == 404
    reader = token(["read"], project_id=project["id"])
    assert (
        await api.call("GET", f"/api/v1/deployments/{deployment.id}", token=reader)
    ).status == 200
    assert (await api.call("POST", f"/api/v1/projects/{name}/rollback", token=reader)).status == 403
