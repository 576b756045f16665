"""control-api test helpers: settings and tokens as the service sees them, unique names, and a
small JSON client over the in-process app (the fixtures that build them are in conftest.py)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.settings import Settings
from launchdeck.libs.tokens import TokenClaims, mint, register

SECRET = "control-api-tests-" + os.urandom(16).hex()


def make_settings(database_url: str, nats_url: str, **more: str) -> Settings:
    """Settings as the service reads them from its environment (`more`: other variables)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", database_url)
        env.setenv("NATS_URL", nats_url)
        env.setenv("LAUNCHDECK_SECRET_KEY", SECRET)
        for name, value in more.items():
            env.setenv(name, value)
        return Settings.from_env()


# Every token `token()` minted, with whether its row is to be revoked: `register_tokens`
# inserts their `api_tokens` rows into a database (the API refuses a token without one).
_MINTED: dict[str, tuple[TokenClaims, str, bool]] = {}
# Per pool (one per test module's database): the jtis already registered there.
_REGISTERED: dict[int, tuple[asyncpg.Pool, set[str]]] = {}


def token(
    scopes: list[str],
    project_id: str | None = None,
    *,
    expires_in_s: int | None = None,
    revoked: bool = False,
    registered: bool = True,
) -> str:
    """A token signed with the tests' secret. Its `api_tokens` row is inserted by
    `register_tokens` (which `Api.call` and the app fixtures run) unless `registered` is false;
    `revoked`: the row says revoked; `expires_in_s` < 0: already expired."""
    value, claims = mint(
        SECRET, subject="tests", scopes=scopes, project_id=project_id, expires_in_s=expires_in_s
    )
    if registered:
        _MINTED[claims.jti] = (claims, value, revoked)
    return value


async def register_tokens(pool: asyncpg.Pool) -> None:
    """Insert the rows of the tokens minted so far that this database does not have yet."""
    done = _REGISTERED.setdefault(id(pool), (pool, set()))[1]
    todo = [jti for jti in _MINTED if jti not in done]
    if not todo:
        return
    async with pool.acquire() as conn:
        for jti in todo:
            claims, value, revoked = _MINTED[jti]
            await register(
                conn, claims, name="tests", created_by="tests", token=value, revoked=revoked
            )
    done.update(todo)


class ApiClient(TestClient[Any, Any]):
    """The aiohttp test client, registering the tokens minted so far before each request or
    WebSocket handshake (see `register_tokens`), so tests need not think about it."""

    async def _request(self, method: str, path: Any, **kwargs: Any) -> Any:
        await register_tokens(self.app[POOL])
        return await super()._request(method, path, **kwargs)

    async def _ws_connect(self, path: Any, **kwargs: Any) -> Any:
        await register_tokens(self.app[POOL])
        return await super()._ws_connect(path, **kwargs)


def unique(prefix: str) -> str:
    """A project name no other test of the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def content_type(self) -> str:
        return str(self.headers.get("Content-Type", ""))


class Api:
    """JSON calls against the in-process app, with the admin token unless told otherwise."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.token: str | None = token(["admin"])

    async def call(
        self, method: str, path: str, json: Any = None, *, token: str | None = None, **kw: Any
    ) -> Reply:
        headers = dict(kw.pop("headers", {}))
        bearer = token if token is not None else self.token
        if bearer and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {bearer}"
        async with self.client.request(method, path, json=json, headers=headers, **kw) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            body: Any = raw.decode(errors="replace")  # a binary file (zip) stays readable
            if "json" in ctype and "ndjson" not in ctype and raw:  # NDJSON stays text
                body = await resp.json(content_type=None)
            return Reply(resp.status, body, resp.headers)

    async def create_project(self, name: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "repo_url": f"https://git.example.invalid/{name}.git", **extra}
        reply = await self.call("POST", "/api/v1/projects", body)
        assert reply.status == 201, reply.body
        return dict(reply.body)
