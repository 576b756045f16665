"""Domains are owned: a host is one project's at most (409 for the next, the owner named only
to an admin token), the platform's own names are nobody's (422), and project names that look
like preview hosts are refused. Through the real app and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.app import create_app
from launchdeck.control_api.domain.domains import claim_domains
from launchdeck.control_api.domain.errors import Conflict
from launchdeck.devservers import with_database
from launchdeck.libs.settings import SettingsError
from tests.control_api.support import Api, ApiClient, make_settings, token, unique
from tests.polling import eventually

MIGRATIONS = (
    Path(__file__).resolve().parents[2]
    / "services/control-api/src/launchdeck/control_api/migrations"
)
BASE = "sites.example.test"
API_HOST = "api.example.test"


def host(prefix: str) -> str:
    """A custom domain no other test of the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}.example.com"


@pytest_asyncio.fixture(loop_scope="session")
async def edge_api(
    pool: asyncpg.Pool, database_url: str, nats_url: str, nc: Client, js: JetStreamContext
) -> AsyncIterator[Api]:
    """The app as an operator runs it on a real base domain, with a public API host."""
    settings = make_settings(
        database_url,
        nats_url,
        LAUNCHDECK_BASE_DOMAIN=BASE.upper() + ".",  # read as the edge reads it
        LAUNCHDECK_API_PUBLIC_HOSTS=f"{API_HOST}, deploy.example.test",
    )
    app = create_app(settings, pool, nc, js, background_tasks=False)
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()


async def create(api: Api, name: str, domains: list[str], **kw: Any) -> Any:
    body = {"name": name, "repo_url": f"https://git.invalid/{name}.git", "domains": domains}
    return await api.call("POST", "/api/v1/projects", body, **kw)


async def test_a_domain_of_another_project_is_409_naming_the_owner_only_to_admins(
    api: Api,
) -> None:
    """The squat of issue 7: B lists A's domain. Created by an admin: 409 naming A, and B is
    not created. B's own write token patching it in: 409 that names no project."""
    shop = host("shop")
    a = await api.create_project(unique("owner"), domains=[shop])
    b_name = unique("squatter")
    reply = await create(api, b_name, [host("fine"), shop])
    assert reply.status == 409, reply.body
    assert reply.content_type.startswith("application/problem+json")
    [error] = reply.body["errors"]
    assert error["field"] == "domains[1]"
    assert a["name"] in error["message"]
    assert (await api.call("GET", f"/api/v1/projects/{b_name}")).status == 404

    b = await api.create_project(b_name)
    writer = token(["write"], project_id=b["id"])
    patch = await api.call("PATCH", f"/api/v1/projects/{b_name}", {"domains": [shop]}, token=writer)
    assert patch.status == 409, patch.body
    assert "another project" in patch.body["detail"]
    assert a["name"] not in str(patch.body)
    assert a["id"] not in str(patch.body)
    assert patch.body["errors"][0]["field"] == "domains[0]"
    admin_patch = await api.call("PATCH", f"/api/v1/projects/{b_name}", {"domains": [shop]})
    assert admin_patch.status == 409
    assert a["name"] in admin_patch.body["detail"]
    assert (await api.call("GET", f"/api/v1/projects/{b_name}")).body["domains"] == []


async def test_platform_hosts_are_nobodys(api: Api) -> None:
    """With the base domain `localhost` (make dev): another project's `<name>.localhost`, a
    preview host, `localhost`, an IP address and a host listed twice are 422 naming the entry;
    the project's own `<name>.localhost` is fine."""
    victim = await api.create_project(unique("victim"))
    name = unique("claims")
    for domains, index, words in [
        ([f"{victim['name']}.localhost"], 0, "base domain localhost"),
        ([host("ok"), f"0badc0de-{victim['name']}.localhost"], 1, "base domain"),
        (["localhost"], 0, "base domain"),
        (["127.0.0.1"], 0, "not an IP address"),
        ([f"{name}.example.com", f"{name}.example.com"], 1, "listed twice"),
    ]:
        reply = await create(api, name, domains)
        assert reply.status == 422, (domains, reply.body)
        [error] = reply.body["errors"]
        assert error["field"] == f"domains[{index}]"
        assert words in error["message"], error
    created = await api.create_project(name, domains=[f"{name}.localhost"])
    assert created["domains"] == [f"{name}.localhost"]


async def test_the_apis_and_the_edges_own_names_are_refused(edge_api: Api) -> None:
    """On a real base domain: the API's public hosts, the base domain and anything under it
    (but the project's own name), localhost and *.localhost; PATCH checks the same."""
    name = unique("edge")
    for domain, words in [
        (API_HOST, "API's own host"),
        ("deploy.example.test", "API's own host"),
        (BASE, "base domain"),
        (f"other.{BASE}", f"only {name}.{BASE}"),
        ("localhost", "localhost"),
        ("app.localhost", "localhost"),
    ]:
        reply = await create(edge_api, name, [domain])
        assert reply.status == 422, (domain, reply.body)
        assert words in reply.body["errors"][0]["message"], reply.body
    own = f"{name}.{BASE}"
    project = await edge_api.create_project(name, domains=[own, host("custom")])
    assert project["domains"][0] == own
    patch = await edge_api.call("PATCH", f"/api/v1/projects/{name}", {"domains": [API_HOST]})
    assert patch.status == 422
    assert patch.body["errors"][0]["field"] == "domains[0]"


async def test_concurrent_requests_for_one_domain_give_it_to_one_project(api: Api) -> None:
    """Eight projects created at once with the same domain: one gets it, seven get 409."""
    shared = host("race")
    replies = await asyncio.gather(*(create(api, unique("race"), [shared]) for _ in range(8)))
    assert sorted(r.status for r in replies) == [201] + [409] * 7


async def test_a_claim_waits_for_a_concurrent_one_and_loses_when_it_commits(
    pool: asyncpg.Pool, api: Api
) -> None:
    """The unique index on lower(host) decides, not a read before the write: a claim made while
    another transaction holds the same host uncommitted waits for it, and is refused once it
    commits."""
    first = uuid.UUID((await api.create_project(unique("first")))["id"])
    second = uuid.UUID((await api.create_project(unique("second")))["id"])
    shared = host("held")
    async with pool.acquire() as holder, pool.acquire() as waiter:
        holding = holder.transaction()
        await holding.start()
        await claim_domains(holder, first, [shared], reveal_owner=True)
        waiter_pid = waiter.get_server_pid()

        async def claim_second() -> None:
            async with waiter.transaction():
                await claim_domains(waiter, second, [shared], reveal_owner=True)

        claiming = asyncio.create_task(claim_second())

        async def waiting_for_a_lock() -> bool:
            async with pool.acquire() as probe:
                event = await probe.fetchval(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", waiter_pid
                )
            return event == "Lock"

        await eventually("the second claim to wait for the first", waiting_for_a_lock)
        assert not claiming.done()
        await holding.commit()
        with pytest.raises(Conflict):
            await claiming


async def test_postgres_keeps_hosts_unique_whatever_their_case(
    pool: asyncpg.Pool, api: Api
) -> None:
    """The table itself refuses a second owner of the same host in another letter case."""
    owner = await api.create_project(unique("case"), domains=[shared := host("case")])
    other = await api.create_project(unique("case"))
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO project_domains (host, project_id) VALUES ($1, $2)",
                shared.upper(),
                uuid.UUID(other["id"]),
            )
        owners = await conn.fetch(
            "SELECT project_id FROM project_domains WHERE lower(host) = $1", shared
        )
    assert [str(r["project_id"]) for r in owners] == [owner["id"]]


async def test_a_domain_is_free_again_once_dropped_or_its_project_deleted(api: Api) -> None:
    """Dropping a domain (PATCH) or deleting its project releases it for another project."""
    a, b = await api.create_project(unique("a")), await api.create_project(unique("b"))
    moved, kept = host("moved"), host("kept")

    async def set_domains(project: dict[str, Any], domains: list[str]) -> int:
        path = f"/api/v1/projects/{project['id']}"
        return (await api.call("PATCH", path, {"domains": domains})).status

    assert await set_domains(a, [moved, kept]) == 200
    assert await set_domains(b, [moved]) == 409
    assert await set_domains(a, [kept]) == 200
    assert await set_domains(b, [moved]) == 200
    assert await set_domains(b, [moved, kept]) == 409
    assert (await api.call("DELETE", f"/api/v1/projects/{a['id']}")).status == 204
    assert await set_domains(b, [moved, kept]) == 200


@pytest.mark.parametrize("name", ["0badc0de-shop", "deadbeef-x", "12345678-a-b"])
async def test_names_shaped_like_preview_hosts_are_refused(api: Api, name: str) -> None:
    """`<8 hex>-<project>` is a preview's host name: a project named so is a 422 on `name`."""
    reply = await create(api, name, [])
    assert reply.status == 422, reply.body
    [error] = reply.body["errors"]
    assert error["field"] == "name"
    assert "preview" in error["message"]


@pytest.mark.parametrize("prefix", ["0badc0d-", "0badc0dez-", "deadbeef"])
async def test_names_that_only_resemble_preview_hosts_are_fine(api: Api, prefix: str) -> None:
    reply = await create(api, f"{prefix}{uuid.uuid4().hex[:6]}", [])
    assert reply.status == 201, reply.body


async def test_migration_gives_a_shared_domain_to_the_oldest_project(pg_dsn: str) -> None:
    """Projects that listed the same host before 0003: the oldest keeps it, the others lose it
    from their list (so the edge stops routing it for them)."""
    name = f"ld_test_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(with_database(pg_dsn, name))
        try:
            for path in sorted(MIGRATIONS.glob("000[12]_*.sql")):
                await conn.execute(path.read_text())
            old, new = uuid.uuid4(), uuid.uuid4()
            for project_id, project, age, domains in [
                (old, "old", timedelta(days=2), ["Shared.example.com", "old.example.com"]),
                (new, "new", timedelta(days=1), ["new.example.com", "shared.example.com"]),
            ]:
                await conn.execute(
                    """INSERT INTO projects (id, name, repo_url, domains, webhook_secret,
                                             created_at)
                       VALUES ($1, $2, 'r', $3, 's', now() - $4::interval)""",
                    project_id,
                    project,
                    domains,
                    age,
                )
            await conn.execute((MIGRATIONS / "0003_owned_domains_and_event_keys.sql").read_text())
            domains = dict(await conn.fetch("SELECT name, domains FROM projects"))
            owned = await conn.fetch("SELECT host, project_id FROM project_domains ORDER BY host")
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert domains == {
        "old": ["Shared.example.com", "old.example.com"],
        "new": ["new.example.com"],
    }
    assert [(r["host"], r["project_id"]) for r in owned] == [
        ("new.example.com", new),
        ("old.example.com", old),
        ("shared.example.com", old),
    ]


def test_base_domain_and_api_hosts_are_read_as_the_edge_compares_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lower case without a trailing dot; `localhost` and no API host by default; an empty
    base domain stops the service naming the variable."""
    monkeypatch.delenv("LAUNCHDECK_BASE_DOMAIN", raising=False)
    monkeypatch.delenv("LAUNCHDECK_API_PUBLIC_HOSTS", raising=False)
    default = make_settings("postgresql://unused", "nats://unused")
    assert (default.base_domain, default.api_public_hosts) == ("localhost", ())
    settings = make_settings(
        "postgresql://unused",
        "nats://unused",
        LAUNCHDECK_BASE_DOMAIN=" Sites.Example.TEST. ",
        LAUNCHDECK_API_PUBLIC_HOSTS="API.example.test,, deploy.example.test.",
    )
    assert settings.base_domain == "sites.example.test"
    assert settings.api_public_hosts == ("api.example.test", "deploy.example.test")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BASE_DOMAIN"):
        make_settings("postgresql://unused", "nats://unused", LAUNCHDECK_BASE_DOMAIN=" . ")
