"""HTTP API of env vars (`/api/v1/projects/{id}/env`) and redeploy: set, list, unset, validation,
values never in a response and never stored in plaintext; a redeploy is the live build again."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncpg

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import DeployRequested
from launchdeck.control_api.domain.sealing import KeyRing, Sealed
from tests.control_api.helpers import T0, activate, get_build, succeed
from tests.control_api.support import SECRET, Api, token, unique

SECRET_VALUE = "s3cret-" + uuid.uuid4().hex


async def stored(pool: asyncpg.Pool, project_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT * FROM env_vars WHERE project_id = $1 ORDER BY key", uuid.UUID(project_id)
            )
        )


async def test_set_list_replace_and_unset(api: Api, pool: asyncpg.Pool) -> None:
    """PUT creates or replaces (200, key + targets + updated_at), GET lists names and targets
    in name order, DELETE removes (204, then 404); no answer ever holds a value."""
    project = await api.create_project(unique("env"))
    base = f"/api/v1/projects/{project['name']}/env"
    replies = []

    put = await api.call("PUT", f"{base}/API_TOKEN", {"value": SECRET_VALUE, "targets": ["build"]})
    replies.append(put)
    assert put.status == 200, put.body
    assert set(put.body) == {"key", "targets", "updated_at"}
    assert (put.body["key"], put.body["targets"]) == ("API_TOKEN", ["build"])

    every = await api.call("PUT", f"{base}/DATABASE_URL", {"value": "postgres://app@db/app"})
    replies.append(every)
    assert every.body["targets"] == ["build", "preview", "production"]  # the default

    # Replacing: new value and targets, each target once, in a fixed order.
    again = await api.call(
        "PUT",
        f"{base}/API_TOKEN",
        {"value": SECRET_VALUE + "-2", "targets": ["production", "build", "production"]},
    )
    replies.append(again)
    assert again.status == 200, again.body
    assert again.body["targets"] == ["build", "production"]
    assert again.body["updated_at"] >= put.body["updated_at"]

    listed = await api.call("GET", base)
    replies.append(listed)
    assert listed.status == 200
    assert [(v["key"], v["targets"]) for v in listed.body["items"]] == [
        ("API_TOKEN", ["build", "production"]),
        ("DATABASE_URL", ["build", "preview", "production"]),
    ]
    assert listed.body["next_cursor"] is None
    page = await api.call("GET", base, params={"limit": "1"})
    replies.append(page)
    assert [v["key"] for v in page.body["items"]] == ["API_TOKEN"]
    rest = await api.call("GET", base, params={"limit": "1", "cursor": page.body["next_cursor"]})
    assert [v["key"] for v in rest.body["items"]] == ["DATABASE_URL"]

    gone = await api.call("DELETE", f"{base}/DATABASE_URL")
    assert gone.status == 204
    missing = await api.call("DELETE", f"{base}/DATABASE_URL")
    replies.append(missing)
    assert missing.status == 404
    after = await api.call("GET", base)
    assert [v["key"] for v in after.body["items"]] == ["API_TOKEN"]
    project_reply = await api.call("GET", f"/api/v1/projects/{project['id']}")
    replies.append(project_reply)

    for reply in replies:
        text = json.dumps(reply.body)
        assert SECRET_VALUE not in text
        assert "postgres://app@db/app" not in text
        assert "value" not in text  # not even a masked placeholder


async def test_values_are_stored_sealed_under_the_key_id(api: Api, pool: asyncpg.Pool) -> None:
    """Postgres holds nonce, ciphertext and key id, not the plaintext; the ciphertext opens with
    the key its id names, bound to its project and name."""
    ring = KeyRing.from_secrets(SECRET)  # the app's, as make_settings configures it
    project = await api.create_project(unique("sealed"))
    reply = await api.call(
        "PUT", f"/api/v1/projects/{project['id']}/env/API_TOKEN", {"value": SECRET_VALUE}
    )
    assert reply.status == 200, reply.body
    [row] = await stored(pool, project["id"])
    assert SECRET_VALUE.encode() not in row["ciphertext"]
    assert SECRET_VALUE.encode() not in bytes(row["nonce"])
    assert row["key_id"] == ring.current.key_id
    async with pool.acquire() as conn:
        dumped = await conn.fetchval("SELECT row_to_json(e)::text FROM env_vars e")
    assert SECRET_VALUE not in dumped
    sealed = Sealed(bytes(row["nonce"]), bytes(row["ciphertext"]), row["key_id"])
    assert ring.open(uuid.UUID(project["id"]), "API_TOKEN", sealed) == SECRET_VALUE


async def test_invalid_names_targets_and_values_are_422(api: Api) -> None:
    """KEY must be an environment variable name, not a platform one; targets a non-empty
    subset of build, preview, production; the body exactly {value, targets}."""
    project = await api.create_project(unique("bad"))
    base = f"/api/v1/projects/{project['id']}/env"
    cases = [
        ("lower_case", {"value": "x"}, "key"),
        ("1STARTS_WITH_DIGIT", {"value": "x"}, "key"),
        ("HAS-DASH", {"value": "x"}, "key"),
        ("PORT", {"value": "x"}, "key"),
        ("LAUNCHDECK_PROJECT", {"value": "x"}, "key"),
        ("A" * 257, {"value": "x"}, "key"),
        ("OK", {"value": "x", "targets": []}, "targets"),
        ("OK", {"value": "x", "targets": ["staging"]}, "targets[0]"),
        ("OK", {"value": "x", "target": ["build"]}, "target"),
        ("OK", {"targets": ["build"]}, "value"),
        ("OK", {"value": 5}, "value"),
        ("OK", {"value": "nul\u0000inside"}, "value"),
        ("OK", {"value": "x" * (64 * 1024 + 1)}, "value"),
    ]
    for key, body, field in cases:
        reply = await api.call("PUT", f"{base}/{key}", body)
        assert reply.status == 422, (key, body, reply.body)
        assert [e["field"] for e in reply.body["errors"]] == [field], (key, body, reply.body)
        assert "x" * 100 not in json.dumps(reply.body)  # a value is not echoed back
    malformed = await api.call("PUT", f"{base}/OK", data=b"{not json")
    assert malformed.status == 400
    # Multi-line values and an empty value are fine.
    for value in ("-----BEGIN KEY-----\nabc\n-----END KEY-----\n", ""):
        ok = await api.call("PUT", f"{base}/MULTI", {"value": value})
        assert ok.status == 200, ok.body
    listed = await api.call("GET", base)
    assert [v["key"] for v in listed.body["items"]] == ["MULTI"]


async def test_scopes_and_other_projects(api: Api) -> None:
    """read lists, write sets and unsets; another project's token gets 404 for all three."""
    project = await api.create_project(unique("scoped"))
    base = f"/api/v1/projects/{project['id']}/env"
    reader = token(["read", "deploy"], project_id=project["id"])
    writer = token(["write"], project_id=project["id"])
    stranger = token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))

    assert (await api.call("PUT", f"{base}/K1", {"value": "v"}, token=reader)).status == 403
    assert (await api.call("PUT", f"{base}/K1", {"value": "v"}, token=writer)).status == 200
    assert (await api.call("GET", base, token=reader)).status == 200
    assert (await api.call("DELETE", f"{base}/K1", token=reader)).status == 403
    for method, path, body in (
        ("GET", base, None),
        ("PUT", f"{base}/K1", {"value": "v"}),
        ("DELETE", f"{base}/K1", None),
        ("PUT", f"{base}/not-a-key", {"value": "v"}),  # 404 before any validation
    ):
        assert (await api.call(method, path, body, token=stranger)).status == 404
    assert (await api.call("DELETE", f"{base}/K1", token=writer)).status == 204


async def test_setting_a_var_restarts_nothing(api: Api, pool: asyncpg.Pool) -> None:
    """A PUT or DELETE queues no command and no event: the value goes nowhere but Postgres."""
    project = await api.create_project(unique("quiet"))
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM outbox")
    await api.call("PUT", f"/api/v1/projects/{project['id']}/env/K", {"value": SECRET_VALUE})
    await api.call("DELETE", f"/api/v1/projects/{project['id']}/env/K")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == before


async def test_redeploy_is_a_new_deployment_of_the_live_build(api: Api, pool: asyncpg.Pool) -> None:
    """POST …/redeploy: 409 while nothing is live; then 202 with a new pending deployment of
    the same build (trigger `redeploy`, no new build) and its DeployRequested queued — which
    carries no env var value."""
    project = await api.create_project(unique("redeploy"))
    path = f"/api/v1/projects/{project['id']}/redeploy"
    nothing = await api.call("POST", path)
    assert nothing.status == 409, nothing.body
    assert "no live production deployment" in nothing.body["detail"]

    await api.call(
        "PUT", f"/api/v1/projects/{project['id']}/env/API_TOKEN", {"value": SECRET_VALUE}
    )
    trigger = await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})
    build = await get_build(pool, uuid.UUID(trigger.body["id"]))
    live = await activate(pool, await succeed(pool, build), T0 + timedelta(minutes=1))
    async with pool.acquire() as conn:
        builds_before = await conn.fetchval(
            "SELECT count(*) FROM builds WHERE project_id = $1", build.project_id
        )

    reply = await api.call("POST", path)
    assert reply.status == 202, reply.body
    deployment = reply.body
    assert deployment["id"] != str(live.id)
    assert deployment["build_id"] == str(build.id)
    assert (deployment["status"], deployment["environment"]) == ("pending", "production")
    assert deployment["trigger"] == "redeploy"
    assert reply.headers["Location"] == f"/api/v1/deployments/{deployment['id']}"
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM builds WHERE project_id = $1", build.project_id
            )
            == builds_before
        )
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", uuid.UUID(deployment["id"])
        )
    assert row is not None
    command = decode(bytes(row["payload"]), DeployRequested)
    assert (command.build_id, command.deployment_id) == (str(build.id), deployment["id"])
    assert SECRET_VALUE.encode() not in bytes(row["payload"])
    # The live one stays live until the new one is active.
    listed = await api.call("GET", f"/api/v1/projects/{project['id']}/deployments")
    assert [d["status"] for d in listed.body["items"]][:2] == ["pending", "active"]
    preview = await api.call("POST", path, {"environment": "preview"})
    assert preview.status == 409
    typo = await api.call("POST", path, {"enviroment": "preview"})
    assert typo.status == 422
