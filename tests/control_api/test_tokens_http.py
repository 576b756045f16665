"""`/api/v1/tokens`: tokens made, listed and revoked through the API, and every way a token is
refused (revoked, expired, unknown, another algorithm, tampered) — checked against Postgres on
each request, through a cache of at most a second."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.api.auth import TOKEN_USAGE
from launchdeck.control_api.app import create_app
from launchdeck.libs.tokens import ISSUER, mint, register
from tests.control_api.log_support import receive_frame
from tests.control_api.support import SECRET, Api, ApiClient, make_settings, token, unique
from tests.polling import eventually

TOKENS = "/api/v1/tokens"


async def make_token(api: Api, **body: Any) -> dict[str, Any]:
    reply = await api.call("POST", TOKENS, {"name": unique("tok"), **body})
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def status(api: Api, bearer: str, path: str = "/api/v1/projects") -> int:
    return (await api.call("GET", path, token=bearer)).status


@pytest_asyncio.fixture(loop_scope="session")
async def replica(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> AsyncIterator[Api]:
    """A second control-api over the same database: another process's cache."""
    app = create_app(make_settings(database_url, nats_url), pool, nc, js, background_tasks=False)
    client = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()


async def test_the_value_is_shown_once_and_never_listed(api: Api) -> None:
    project = await api.create_project(unique("tok"))
    made = await make_token(
        api, scopes=["deploy", "read"], project_id=project["name"], expires_in=3600
    )
    assert set(made) == {
        "id", "token", "name", "scopes", "project_id", "expires_at", "created_at"
    }  # fmt: skip
    assert made["scopes"] == ["read", "deploy"]
    assert made["project_id"] == project["id"]
    claims = jwt.decode(made["token"], SECRET, algorithms=["HS256"], issuer=ISSUER)
    assert claims["jti"] == made["id"]
    assert claims["exp"] - time.time() > 3500

    # The new token works within its scopes: reads and builds its project, nothing more.
    own = f"/api/v1/projects/{project['id']}"
    assert await status(api, made["token"], own) == 200
    assert (await api.call("POST", f"{own}/builds", {}, token=made["token"])).status == 202
    assert (await api.call("PATCH", own, {"branch": "x"}, token=made["token"])).status == 403

    listed = await api.call("GET", TOKENS, params={"limit": "200"})
    assert listed.status == 200
    assert made["token"] not in json.dumps(listed.body)
    (row,) = [t for t in listed.body["items"] if t["id"] == made["id"]]
    assert "token" not in row
    assert row["created_by"] == "tests"
    assert row["revoked_at"] is None
    assert row["expires_at"] is not None


async def test_the_list_is_paginated_newest_first(api: Api) -> None:
    project = await api.create_project(unique("tok"))
    ids = [(await make_token(api, scopes=["read"], project_id=project["id"]))["id"] for _ in "abc"]
    first = await api.call("GET", TOKENS, params={"limit": "2"})
    assert [t["id"] for t in first.body["items"]] == ids[::-1][:2]
    second = await api.call(
        "GET", TOKENS, params={"limit": "2", "cursor": first.body["next_cursor"]}
    )
    assert second.body["items"][0]["id"] == ids[0]
    bad = await api.call("GET", TOKENS, params={"cursor": "nope"})
    assert bad.status == 422


async def test_revocation_takes_effect_on_every_replica_within_seconds(
    api: Api, replica: Api
) -> None:
    made = await make_token(api, scopes=["admin"])
    # Both replicas have it cached as valid.
    assert await status(api, made["token"]) == 200
    assert await status(replica, made["token"]) == 200
    revoked_at = time.monotonic()
    assert (await api.call("DELETE", f"{TOKENS}/{made['id']}")).status == 204
    # At once on the replica that revoked it, within the cache's second on the other.
    assert await status(api, made["token"]) == 401

    async def refused() -> bool:
        return await status(replica, made["token"]) == 401

    await eventually("the other replica refusing the revoked token", refused, timeout_s=2.0)
    assert time.monotonic() - revoked_at < 2.0
    reply = await api.call("GET", "/api/v1/projects", token=made["token"])
    assert reply.body["detail"] == "token revoked"
    # The row stays, marked.
    listed = await api.call("GET", TOKENS, params={"limit": "200"})
    (row,) = [t for t in listed.body["items"] if t["id"] == made["id"]]
    assert row["revoked_at"] is not None
    # Revoking again is harmless; an unknown or malformed id is a 404.
    assert (await api.call("DELETE", f"{TOKENS}/{made['id']}")).status == 204
    assert (await api.call("DELETE", f"{TOKENS}/{uuid.uuid4()}")).status == 404
    assert (await api.call("DELETE", f"{TOKENS}/not-an-id")).status == 404


async def test_an_expired_token_is_refused(api: Api, pool: asyncpg.Pool) -> None:
    made = await make_token(api, scopes=["admin"], expires_in=1)
    assert await status(api, made["token"]) == 200

    async def refused() -> bool:
        return await status(api, made["token"]) == 401

    await eventually("the token expiring", refused, timeout_s=5)
    # The row's expiry counts too, even where the JWT itself says nothing of it.
    lasting = token(["admin"])
    assert await status(api, lasting) == 200
    jti = jwt.decode(lasting, options={"verify_signature": False})["jti"]
    await pool.execute(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(jti),
    )

    async def row_expired() -> bool:
        return await status(api, lasting) == 401

    await eventually("the row's expiry refusing the token", row_expired, timeout_s=2.0)


async def test_a_token_without_a_row_is_refused(api: Api) -> None:
    """Signed with the right key but never recorded (or its row deleted): refused."""
    unknown = token(["admin"], registered=False)
    reply = await api.call("GET", "/api/v1/projects", token=unknown)
    assert reply.status == 401
    assert reply.body["detail"] == "unknown token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the HS512 forgery's key length
async def test_other_algorithms_and_tampering_are_refused(api: Api, pool: asyncpg.Pool) -> None:
    """Only HS256 with the platform key passes: `none`, RS256 (any key), HS512 (even with the
    right key) and a token whose claims were edited after signing are all 401."""
    good, claims = mint(SECRET, subject="x", scopes=["read"], project_id=str(uuid.uuid4()))
    async with pool.acquire() as conn:
        await register(conn, claims, name="x", created_by="tests")
    assert await status(api, good) == 200
    payload = jwt.decode(good, SECRET, algorithms=["HS256"], issuer=ISSUER)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header, body, signature = good.split(".")
    admin_body = _b64(json.dumps({**payload, "scopes": ["admin"]}).encode())
    none_header = _b64(b'{"alg":"none","typ":"JWT"}')
    forged = {
        "none": jwt.encode(payload, None, algorithm="none"),
        "none, unsigned": f"{none_header}.{body}.",
        "RS256": jwt.encode(payload, rsa_key, algorithm="RS256"),
        "HS512": jwt.encode(payload, SECRET, algorithm="HS512"),
        "tampered claims": f"{header}.{admin_body}.{signature}",
        "tampered signature": f"{header}.{body}.{signature[:-4]}AAAA",
        "another key": jwt.encode(payload, "another-secret-" + "x" * 32, algorithm="HS256"),
    }
    for what, forgery in forged.items():
        reply = await api.call("GET", "/api/v1/projects", token=forgery)
        assert reply.status == 401, what
        assert reply.headers["WWW-Authenticate"].startswith("Bearer"), what


async def test_last_used_at_is_kept_without_a_write_per_request(
    api: Api, pool: asyncpg.Pool
) -> None:
    made = await make_token(api, scopes=["admin"])
    assert await status(api, made["token"]) == 200

    async def last_used() -> Any:
        return await pool.fetchval(
            "SELECT last_used_at FROM api_tokens WHERE id = $1", uuid.UUID(made["id"])
        )

    first = await eventually("last_used_at being set", last_used)
    for _ in range(5):
        assert await status(api, made["token"]) == 200
    await api.client.app[TOKEN_USAGE].drain()
    # Within the minute: no further write.
    assert await last_used() == first
    listed = await api.call("GET", TOKENS, params={"limit": "200"})
    (row,) = [t for t in listed.body["items"] if t["id"] == made["id"]]
    assert row["last_used_at"] is not None


async def test_bad_requests_are_field_errors(api: Api) -> None:
    project = await api.create_project(unique("tok"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "a", "scopes": ["admin"], "project_id": project["id"]}, "project_id"),
        ({"name": "a", "scopes": ["admin", "read"]}, "scopes"),
        ({"name": "a", "scopes": ["read"]}, "project_id"),
        ({"name": "a", "scopes": ["read", "read"], "project_id": project["id"]}, "scopes"),
        ({"name": "a", "scopes": ["root"], "project_id": project["id"]}, "scopes"),
        ({"name": "a", "scopes": [], "project_id": project["id"]}, "scopes"),
        ({"name": "", "scopes": ["admin"]}, "name"),
        ({"name": "a", "scopes": ["admin"], "expires_in": 0}, "expires_in"),
        ({"name": "a", "scopes": ["admin"], "expires_in": 10**12}, "expires_in"),
        ({"name": "a", "scopes": ["read"], "project_id": "no-such-project"}, "project_id"),
        ({"name": "a", "scopes": ["read"], "project_id": str(uuid.uuid4())}, "project_id"),
        ({"name": "a", "scopes": ["admin"], "extra": 1}, "extra"),
    ]
    for body, field in cases:
        reply = await api.call("POST", TOKENS, body)
        assert reply.status in {400, 422}, (body, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        fields = [e["field"] for e in reply.body.get("errors", [])]
        assert any(f.startswith(field) for f in fields), (body, reply.body)


async def test_only_admins_manage_tokens(api: Api) -> None:
    project = await api.create_project(unique("tok"))
    writer = token(["read", "deploy", "write"], project_id=project["id"])
    body = {"name": "mine", "scopes": ["read"], "project_id": project["id"]}
    assert (await api.call("POST", TOKENS, body, token=writer)).status == 403
    assert (await api.call("GET", TOKENS, token=writer)).status == 403
    own = await make_token(api, scopes=["read"], project_id=project["id"])
    assert (await api.call("DELETE", f"{TOKENS}/{own['id']}", token=writer)).status == 403


async def test_a_websocket_opens_no_channel_once_its_token_is_revoked(api: Api) -> None:
    project = await api.create_project(unique("tok"))
    made = await make_token(api, scopes=["read"], project_id=project["id"])
    ws = await api.client.ws_connect(f"/api/v1/ws?token={made['token']}")
    events = f"project:{project['id']}:events"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": events}))
    assert await receive_frame(ws) == {"type": "subscribed", "channel": events}
    assert (await api.call("DELETE", f"{TOKENS}/{made['id']}")).status == 204
    logs = f"project:{project['id']}:logs"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": logs}))
    frame = await receive_frame(ws)
    assert frame["type"] == "error"
    assert frame["message"] == "token revoked"
    await ws.close()
