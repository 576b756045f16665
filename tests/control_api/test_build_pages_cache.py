"""The builds-list page cache (`domain.page_cache`, `api.page_cache`): this process's changes
show at once, anyone else's within the TTL, and the token is checked on every request, hit or
miss."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildStatusChanged
from launchdeck.contracts.subjects import build_event_subject
from launchdeck.control_api.api.page_cache import BUILD_PAGES
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.domain.page_cache import PAGE_CACHE_TTL_S, PageCache
from launchdeck.libs.jobs import Delivery, Outcome
from tests.control_api.support import Api, token, unique
from tests.polling import eventually

P1, P2 = uuid.uuid4(), uuid.uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl_counted_from_the_mark() -> None:
    clock = Clock()
    cache = PageCache(ttl_s=1.0, clock=clock)
    mark = cache.mark()
    clock.now += 0.4  # the query's time counts against the entry
    cache.put("k", P1, b"page", mark)
    assert cache.get("k") == (P1, b"page")
    clock.now += 0.59
    assert cache.get("k") == (P1, b"page")
    clock.now += 0.02
    assert cache.get("k") is None


def test_an_invalidation_during_the_query_keeps_the_old_page_out() -> None:
    """A query that started before a change committed (and was invalidated) may have read the
    old rows: its page is not kept. One that started after the invalidation is."""
    cache = PageCache(clock=Clock())
    before = cache.mark()
    cache.invalidate(P1)
    cache.put("k", P1, b"old", before)
    assert cache.get("k") is None
    after = cache.mark()
    cache.put("k", P1, b"new", after)
    assert cache.get("k") == (P1, b"new")
    cache.invalidate(P1)
    assert cache.get("k") is None


def test_invalidation_is_per_project_or_everything() -> None:
    cache = PageCache(clock=Clock())
    cache.put("a", P1, b"a", cache.mark())
    cache.put("b", P2, b"b", cache.mark())
    cache.invalidate(P1)
    assert cache.get("a") is None
    assert cache.get("b") == (P2, b"b")
    cache.put("a", P1, b"a2", cache.mark())
    stale = cache.mark()
    cache.invalidate(None)
    assert cache.get("a") is None
    assert cache.get("b") is None
    cache.put("b", P2, b"b", stale)
    assert cache.get("b") is None


def test_the_cache_is_bounded() -> None:
    clock = Clock()
    cache = PageCache(max_entries=10, clock=clock)
    for i in range(25):
        cache.put(i, uuid.uuid4(), b"x", cache.mark())
    assert len(cache._entries) <= 10
    assert cache.get(24) is not None
    for _ in range(25):
        cache.invalidate(uuid.uuid4())
    assert len(cache._invalidated) <= 10
    assert cache.get(24) is None  # emptying the marks drops every older entry too


def cache_of(api: Api) -> PageCache:
    return api.client.app[BUILD_PAGES]  # type: ignore[no-any-return]


async def listed(api: Api, project: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    reply = await api.call("GET", f"/api/v1/projects/{project['id']}/builds", **kw)
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


async def test_this_replicas_writes_show_at_once(api: Api) -> None:
    """A build created, a build cancelled, a project deleted: the next read shows it, although
    the page before was cached."""
    project = await api.create_project(unique("cached"))
    path = f"/api/v1/projects/{project['id']}/builds"
    assert await listed(api, project) == []
    assert cache_of(api).get((project["id"], 50, None)) is not None  # the page was kept
    build = (await api.call("POST", path, {})).body
    assert [b["id"] for b in await listed(api, project)] == [build["id"]]
    assert (await listed(api, project))[0]["status"] == "queued"
    cancelled = await api.call("POST", f"/api/v1/builds/{build['id']}/cancel")
    assert cancelled.status == 202, cancelled.body
    assert (await listed(api, project))[0]["status"] == "cancelled"
    assert (await api.call("DELETE", f"/api/v1/projects/{project['id']}")).status == 204
    assert (await api.call("GET", path)).status == 404


async def test_an_applied_event_shows_at_once(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The events consumer drops the project's pages once it has applied an event."""
    project = await api.create_project(unique("evented"))
    build = (await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})).body
    assert (await listed(api, project))[0]["status"] == "queued"
    consumer = EventsConsumer(pool, js, on_change=cache_of(api).invalidate)
    event = BuildStatusChanged(
        build_id=build["id"],
        project_id=project["id"],
        status="cloning",
        step="clone",
        at=datetime.now(UTC),
    )
    delivery = Delivery(
        num_delivered=1,
        max_deliver=-1,
        subject=build_event_subject(project["id"], build["id"]),
        stream_seq=uuid.uuid4().int % 2**40,
        msg_id=str(uuid.uuid4()),
        stored_at=datetime.now(UTC),
    )
    assert await consumer.handle(msgspec.Raw(encode(event)), delivery) == Outcome.ACK
    shown = (await listed(api, project))[0]
    assert (shown["status"], shown["step"]) == ("cloning", "clone")


async def test_another_replicas_change_shows_within_the_ttl(api: Api, pool: asyncpg.Pool) -> None:
    """A change this process did not make (another replica's, here a direct SQL update) is
    served stale for at most the TTL."""
    project = await api.create_project(unique("elsewhere"))
    build = (await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})).body
    assert (await listed(api, project))[0]["step"] is None
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE builds SET step = 'install' WHERE id = $1", uuid.UUID(build["id"])
        )
    changed = time.monotonic()

    async def fresh() -> bool:
        return bool((await listed(api, project))[0]["step"] == "install")

    seen: bool = await eventually("the other replica's change", fresh)
    assert seen
    # Polled every 20 ms: seen within the TTL, give or take the polling and a loaded machine.
    assert time.monotonic() - changed < PAGE_CACHE_TTL_S + 1.0


async def test_every_hit_checks_the_token(api: Api) -> None:
    """A cached page goes only to tokens that may read the project: another project's gets 404,
    a revoked one 401, the project's reader the page."""
    project = await api.create_project(unique("guarded"))
    other = await api.create_project(unique("other"))
    await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})
    items = await listed(api, project)
    assert cache_of(api).get((project["id"], 50, None)) is not None
    path = f"/api/v1/projects/{project['id']}/builds"
    foreign = await api.call("GET", path, token=token(["read"], project_id=other["id"]))
    assert foreign.status == 404
    assert foreign.body["detail"] == f"no project {project['id']!r}"
    revoked = await api.call("GET", path, token=token(["admin"], revoked=True))
    assert revoked.status == 401
    assert (await api.call("GET", path, token="")).status == 401
    reader = token(["read"], project_id=project["id"])
    assert await listed(api, project, token=reader) == items
