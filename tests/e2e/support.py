"""End-to-end test helpers: the platform started as processes (as users run it), a JSON client,
and the small steps every end-to-end test takes (create, deploy, read the log WebSocket).

Each service logs in to NATS as its own user (`libs.nats_access`, passwords of tests/nats_auth.py
given as `launchdeck dev` gives them: `NATS_USER` and a `NATS_PASSWORD_FILE`), so every e2e test
runs the platform on the least privileges it ships with; a platform given the server's logs
(`nats_logs`) fails its teardown if the server refused a service anything meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from launchdeck.devservers import free_port
from launchdeck.libs.jetstream import public_nats_url
from launchdeck.libs.settings import NATS_CREDENTIAL_VARIABLES
from launchdeck.libs.tokens import mint, register
from tests.nats_auth import log_sizes, permission_violations, service_logins

SERVICES = ("control_api", "build_worker", "deploy_engine", "generator")


@dataclass
class Platform:
    api_url: str
    edge_port: int
    engine_url: str
    token: str
    state_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Each service's own NATS login (NATS_USER, NATS_PASSWORD_FILE), by service module name.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, service: str) -> None:
        log = open(self.state_dir / f"{service}.log", "ab")  # noqa: SIM115
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"launchdeck.{service}"],
            env={**self.env, **self.service_env.get(service, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, service: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes.pop(service, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def logs(self, service: str) -> str:
        path = self.state_dir / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def wait_http_ok(url: str, timeout_s: float, platform: Platform) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for name, proc in platform.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited at start-up:\n{platform.logs(name)[-3000:]}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def nats_login_env(state_dir: Path, external: bool | None = None) -> dict[str, dict[str, str]]:
    """Each service's NATS login as `launchdeck dev` gives it: `NATS_USER` and the path of a
    file (0600, under `state_dir`) holding its password. With `LAUNCHDECK_TEST_NATS_URL` (a
    server of the caller's, without the session's users: `external`) there are none, and every
    service uses the credentials of the URL."""
    if os.environ.get("LAUNCHDECK_TEST_NATS_URL") if external is None else external:
        return {}
    directory = state_dir / "credentials"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    logins = service_logins()
    env = {}
    for service in SERVICES:
        user, password = logins[service.replace("_", "-")]
        path = directory / f"nats-{user}.password"
        path.write_text(password + "\n")
        path.chmod(0o600)
        env[service] = {"NATS_USER": user, "NATS_PASSWORD_FILE": str(path)}
    return env


@contextlib.asynccontextmanager
async def launch_platform(
    state_dir: Path,
    database_url: str,
    nats_url: str,
    extra_env: Mapping[str, str] | None = None,
    *,
    nats_logs: Sequence[Path] = (),
) -> AsyncIterator[Platform]:
    """The four services running on `state_dir` (plus `extra_env`), each logged in to NATS as
    its own user (`nats_login_env`), stopped with Caddy after. `nats_logs`: the NATS server's
    log files; if it refused a service anything while the platform ran, the exit fails saying
    what (a permission table that is not enough for what the test did)."""
    secret = os.urandom(32).hex()
    token, claims = mint(secret, subject="admin", scopes=["admin"])
    api_port, edge_port, engine_port = free_port(), free_port(), free_port()
    logins = nats_login_env(state_dir)
    base = {k: v for k, v in os.environ.items() if not logins or k not in NATS_CREDENTIAL_VARIABLES}
    env = {
        **base,
        "DATABASE_URL": database_url,
        # With their own logins the services get the URL without the operator's.
        "NATS_URL": public_nats_url(nats_url) if logins else nats_url,
        "LAUNCHDECK_STATE_DIR": str(state_dir),
        "LAUNCHDECK_SECRET_KEY": secret,
        "LAUNCHDECK_API_PORT": str(api_port),
        "LAUNCHDECK_EDGE_HTTP_PORT": str(edge_port),
        "LAUNCHDECK_EDGE_URL": f"http://127.0.0.1:{edge_port}",  # scheduled HTTP actions
        "LAUNCHDECK_DEPLOY_ENGINE_PORT": str(engine_port),
        "LAUNCHDECK_BASE_DOMAIN": "localhost",
        "LAUNCHDECK_ALLOW_LOCAL_REPOS": "true",
        "LAUNCHDECK_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    p = Platform(
        api_url=f"http://127.0.0.1:{api_port}",
        edge_port=edge_port,
        engine_url=f"http://127.0.0.1:{engine_port}",
        token=token,
        state_dir=state_dir,
        env=env,
        service_env=logins,
    )
    log_start = log_sizes(nats_logs)
    for service in SERVICES:
        p.start(service)
    try:
        await wait_http_ok(f"{p.api_url}/ready", 60, p)
        # Once the control-api has migrated: its api_tokens row, or the API refuses the token.
        conn = await asyncpg.connect(database_url)
        try:
            await register(conn, claims, name="admin", created_by="tests", token=token)
        finally:
            await conn.close()
        await wait_http_ok(f"{p.engine_url}/health", 60, p)
        yield p
    finally:
        for service in list(p.processes):
            p.stop(service)
        from launchdeck.deploy_engine.apps.shutdown import stop_apps
        from launchdeck.deploy_engine.caddy import stop_caddy

        stop_apps(state_dir, grace_s=2.0)  # apps outlive the engine, as Caddy does
        stop_caddy(state_dir)
    refused = permission_violations(nats_logs, since=log_start)
    assert not refused, f"NATS refused the services (tests/nats_auth.py): {refused}"


class Api:
    """A thin JSON client for the tests."""

    def __init__(self, session: aiohttp.ClientSession, platform: Platform) -> None:
        self.session = session
        self.platform = platform

    async def call(self, method: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = kw.pop("headers", self.platform.headers)
        async with self.session.request(
            method, f"{self.platform.api_url}/api/v1{path}", json=json, headers=headers, **kw
        ) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await resp.json(content_type=None) if "json" in ctype else await resp.text()
            return resp.status, body

    async def wait_build(self, build_id: str, timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, build = await self.call("GET", f"/builds/{build_id}")
            if build["status"] in ("succeeded", "failed", "cancelled"):
                return dict(build)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"build {build_id} not finished: {build}")

    async def wait_deployment(
        self, deployment_id: str, status: str = "active", timeout_s: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, dep = await self.call("GET", f"/deployments/{deployment_id}")
            if dep["status"] == status:
                return dict(dep)
            if dep["status"] == "failed" and status != "failed":
                raise AssertionError(f"deployment failed: {dep}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"deployment {deployment_id} not {status}: {dep}")

    async def wait_build_deployment(self, build_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """The deployment the build created on success, once active."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, build = await self.call("GET", f"/builds/{build_id}")
            if build.get("deployment_id"):
                return await self.wait_deployment(build["deployment_id"], timeout_s=timeout_s)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"build {build_id} has no deployment")

    def log_ws_url(self, build_id: str) -> str:
        """The build's log WebSocket, authenticated with the admin token."""
        base = self.platform.api_url.replace("http", "ws")
        return f"{base}/api/v1/builds/{build_id}/logs/ws?token={self.platform.token}"

    async def edge_get(
        self, project: str, path: str = "/", *, host: str | None = None
    ) -> tuple[int, str]:
        """GET through the edge at `<project>.localhost`, or at `host`."""
        async with self.session.get(
            f"http://127.0.0.1:{self.platform.edge_port}{path}",
            headers={"Host": host or f"{project}.localhost"},
        ) as resp:
            return resp.status, await resp.text()


def site(title: str) -> dict[str, str | bytes]:
    return {
        "index.html": f"<!doctype html><title>{title}</title><h1>{title}</h1>",
        "style.css": "h1 { color: rebeccapurple; }",
    }


async def create_project(api: Api, name: str, repo: Path, **extra: Any) -> dict[str, Any]:
    status, body = await api.call(
        "POST", "/projects", {"name": name, "repo_url": str(repo), **extra}
    )
    assert status == 201, body
    assert body["name"] == name
    assert body["webhook_secret"]
    return dict(body)


async def deploy(api: Api, project: str, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    status, build = await api.call("POST", f"/projects/{project}/builds", body or {})
    assert status == 202, build
    assert build["status"] == "queued"
    finished = await api.wait_build(build["id"])
    assert finished["status"] == "succeeded", finished
    deployment = await api.wait_build_deployment(build["id"])
    return finished, deployment


async def read_ws(
    session: aiohttp.ClientSession, url: str, seen: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines: list[dict[str, Any]] = [] if seen is None else seen
    async with session.ws_connect(url) as ws:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "end":
                return lines, frame
            assert frame["type"] == "log", frame
            lines.append(frame)
    raise AssertionError("socket closed without an end frame")


@dataclass(frozen=True)
class Result:
    code: int
    out: list[str]
    err: list[str]


async def launchdeck(platform: Platform, *args: str) -> Result:
    """Run `launchdeck <args>` as a process against `platform` (API URL and token by env)."""
    env = {key: value for key, value in platform.env.items() if not key.startswith("LAUNCHDECK_")}
    env |= {"LAUNCHDECK_API_URL": platform.api_url, "LAUNCHDECK_TOKEN": platform.token}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "launchdeck.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(done.returncode, done.stdout.splitlines(), done.stderr.splitlines())
