"""The control-api's env var server (`ld.rpc.env`) run in a test as the platform runs it, and
clients of the other services asking it — each logged in as its own NATS user with its own
inbox (tests/nats_auth.py), so the permission table (`libs.nats_access`) is what lets the
control-api subscribe and answer and the workers ask: a missing grant fails these tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
from nats.aio.client import Client

from launchdeck.contracts.api import BuildCreate, EnvVarSet, ProjectCreate
from launchdeck.contracts.messages import BuildConfig, BuildRequested, EnvTarget
from launchdeck.control_api.consumers.env_requests import EnvRequestServer
from launchdeck.control_api.domain import env_vars
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain.builds import trigger_build
from launchdeck.control_api.domain.domains import DomainPolicy
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs.jetstream import connect
from launchdeck.libs.nats_access import access_of
from tests.nats_auth import login_url

START_TIMEOUT_S = 10.0


async def service_connection(nats_url: str, user: str) -> Client:
    """A connection to the NATS of `nats_url` as the platform's service `user` (`control-api`,
    `build-worker`, `deploy-engine`), with its own inbox prefix, as `libs.service` connects."""
    access = access_of(user)
    assert access is not None, user
    return await connect(
        login_url(nats_url, user), name=access.service, inbox_prefix=access.inbox_prefix
    )


class Served(Protocol):
    """A control-api server of core NATS subjects (`consumers.queue_group`)."""

    ready: asyncio.Event

    def run(self) -> Awaitable[None]: ...


ServedT = TypeVar("ServedT", bound=Served)


@contextlib.asynccontextmanager
async def serving_as_control_api(
    nats_url: str, make: Callable[[Client], ServedT], what: str
) -> AsyncIterator[ServedT]:
    """`make(connection)` run as the platform runs it, logged in as the control-api's NATS
    user, from the moment it has its subscriptions until the block ends."""
    nc = await service_connection(nats_url, "control-api")
    server = make(nc)
    task = asyncio.ensure_future(server.run())
    try:
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({ready, task}, timeout=START_TIMEOUT_S, return_when="FIRST_COMPLETED")
        if not server.ready.is_set():
            ready.cancel()
            if task.done():
                task.result()  # what stopped it
            raise AssertionError(f"the {what} did not start")
        yield server
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()


@contextlib.asynccontextmanager
async def env_server(
    pool: asyncpg.Pool, nats_url: str, keyring: KeyRing
) -> AsyncIterator[EnvRequestServer]:
    """The real `EnvRequestServer` over `pool` (`serving_as_control_api`)."""
    make = partial(EnvRequestServer, pool, keyring=keyring)
    async with serving_as_control_api(nats_url, make, "env request server") as server:
        yield server


async def registered_build(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    repo: Path | str,
    variables: Mapping[str, tuple[str, list[EnvTarget]]] = {},
    **config: Any,
) -> BuildRequested:
    """A project of `repo` with `variables` (name → (value, targets)) and a queued build of it,
    made by the control-api's own logic in the database of `pool`; the command a build-worker
    receives for that build (with `config` as the project's build settings)."""
    async with pool.acquire() as conn:
        created = await projects_service.create_project(
            conn,
            ProjectCreate(name=f"envs-{uuid.uuid4().hex[:8]}", repo_url=str(repo)),
            keyring=keyring,
            policy=DomainPolicy(base_domain="localhost"),
            reveal_owner=True,
        )
        project = created.project
        for key, (value, targets) in variables.items():
            body = EnvVarSet(value=value, targets=targets)
            await env_vars.set_var(conn, keyring, project, key, body)
        build = await trigger_build(conn, project, BuildCreate())
    return BuildRequested(
        build_id=str(build.id),
        project_id=str(project.id),
        project_name=project.name,
        number=build.number,
        repo_url=str(repo),
        ref="main",
        config=BuildConfig(**config),
    )
