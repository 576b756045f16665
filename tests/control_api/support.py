"""control-api test helpers: settings and tokens as the service sees them, unique names, and a
small JSON client over the in-process app (the fixtures that build them are in conftest.py)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from launchdeck.control_api.settings import Settings
from launchdeck.libs.tokens import mint

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


def token(scopes: list[str], project_id: str | None = None) -> str:
    value, _ = mint(SECRET, subject="tests", scopes=scopes, project_id=project_id)
    return value


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
            body: Any = raw.decode()
            if "json" in ctype and raw:
                body = await resp.json(content_type=None)
            return Reply(resp.status, body, resp.headers)

    async def create_project(self, name: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "repo_url": f"https://git.example.invalid/{name}.git", **extra}
        reply = await self.call("POST", "/api/v1/projects", body)
        assert reply.status == 201, reply.body
        return dict(reply.body)
