"""The shared fixtures start real servers and apply the migrations."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s


async def test_database_is_migrated(database_url: str) -> None:
    """A module database has every table of the foundation migration."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert {"projects", "builds", "deployments", "outbox", "schema_migrations"} <= tables


async def test_jetstream_is_provisioned(js: JetStreamContext) -> None:
    """Provisioning creates every stream of SPEC §1.1 and is idempotent."""
    from launchdeck.libs.jetstream import provision

    await provision(js)
    for name in (s.STREAM_BUILDS, s.STREAM_DEPLOYS, s.STREAM_EVENTS, s.STREAM_LOGS):
        info = await js.stream_info(name)
        assert info.config.name == name
    await js.object_store(s.OBJECT_STORE_ARTIFACTS)


def test_git_repo_factory(make_git_repo) -> None:  # type: ignore[no-untyped-def]
    """The factory makes a real repository with the files committed on main."""
    repo: Path = make_git_repo({"index.html": "<h1>hi</h1>"})
    assert (repo / ".git").is_dir()
    assert (repo / "index.html").read_text() == "<h1>hi</h1>"
