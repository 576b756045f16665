"""/metrics reports the backlogs an operator alerts on: the outbox (rows not yet published and
the age of the oldest) and each durable consumer (pending, unacked), with `launchdeck_nats_up`
saying whether the consumer figures are current — and a scrape never hangs while NATS is away."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from launchdeck.contracts.subjects import (
    CONSUMER_BUILD_WORKERS,
    SERVICE_CONTROL_API,
    STREAM_BUILDS,
    SUBJECT_BUILD_JOBS,
)
from launchdeck.control_api.api.scrape import DURABLE_CONSUMERS
from launchdeck.control_api.app import create_app
from launchdeck.libs.jetstream import provision
from launchdeck.libs.nats_access import access_of
from tests.control_api.support import Api, ApiClient, make_settings, unique
from tests.libs.support import RestartableNats
from tests.polling import eventually

BUILDS_SERIES = f'consumer="{CONSUMER_BUILD_WORKERS}",stream="{STREAM_BUILDS}"'


def sample(page: str, name: str, labels: str = "") -> float | None:
    """The value of series `name{labels}` in a /metrics page (labels as printed), or None."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    values = [line[len(prefix) :] for line in page.splitlines() if line.startswith(prefix)]
    assert len(values) <= 1, values
    return float(values[0]) if values else None


async def scrape(api: Api) -> str:
    reply = await api.call("GET", "/metrics", token="")
    assert reply.status == 200, reply.body
    page: str = reply.body
    return page


@pytest_asyncio.fixture(loop_scope="session")
async def own_api(
    pool: asyncpg.Pool, database_url: str, restartable_nats: RestartableNats, own_nc: Client
) -> AsyncIterator[tuple[Api, JetStreamContext]]:
    """The app (no background tasks: nothing relays the outbox) on a NATS of the test's own."""
    js = own_nc.jetstream()
    await provision(js)
    await pool.execute("DELETE FROM outbox")  # a clean slate: this module's earlier tests
    app = create_app(
        make_settings(database_url, restartable_nats.url), pool, own_nc, js, background_tasks=False
    )
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client), js
    finally:
        await client.close()


async def test_outbox_lag_grows_while_a_command_waits(
    own_api: tuple[Api, JetStreamContext],
) -> None:
    """With nothing relaying, a build's command stays in the outbox: pending 1, and the lag (age
    of the oldest row) is above zero and grows; both are 0 once the row is gone."""
    api, _ = own_api
    page = await scrape(api)
    assert (
        sample(page, "launchdeck_outbox_pending"),
        sample(page, "launchdeck_outbox_lag_seconds"),
    ) == (0, 0)
    assert "# TYPE launchdeck_outbox_lag_seconds gauge" in page

    project = await api.create_project(unique("lag"))
    reply = await api.call("POST", f"/api/v1/projects/{project['id']}/builds", {})
    assert reply.status == 202, reply.body
    page = await scrape(api)
    assert sample(page, "launchdeck_outbox_pending") == 1
    first = sample(page, "launchdeck_outbox_lag_seconds")
    assert first is not None
    assert 0 < first < 30

    async def older() -> float | None:
        lag = sample(await scrape(api), "launchdeck_outbox_lag_seconds")
        return lag if lag is not None and lag > first + 0.2 else None

    await eventually("the lag grows while the row waits", older, timeout_s=5)


async def test_consumer_backlog_and_nats_up(
    own_api: tuple[Api, JetStreamContext], restartable_nats: RestartableNats
) -> None:
    """Three commands on BUILDS, one handed to a worker and not acked: pending 2, ack pending 1
    for `build-workers`; a consumer that does not exist has no series. With NATS stopped the
    scrape still answers at once, with `launchdeck_nats_up 0` and no consumer series; they
    come back with NATS."""
    api, js = own_api
    await js.add_consumer(
        STREAM_BUILDS,
        ConsumerConfig(durable_name=CONSUMER_BUILD_WORKERS, ack_policy=AckPolicy.EXPLICIT),
    )
    for i in range(3):
        await js.publish(SUBJECT_BUILD_JOBS, f"job {i}".encode())
    worker = await js.pull_subscribe_bind(CONSUMER_BUILD_WORKERS, STREAM_BUILDS)
    taken = await worker.fetch(1, timeout=5)
    assert len(taken) == 1

    page = await scrape(api)
    assert sample(page, "launchdeck_nats_up") == 1
    assert sample(page, "launchdeck_consumer_pending", BUILDS_SERIES) == 2
    assert sample(page, "launchdeck_consumer_ack_pending", BUILDS_SERIES) == 1
    # Nobody created the generators' consumer: no series rather than a made-up 0.
    assert 'consumer="generators"' not in page
    assert "# TYPE launchdeck_consumer_pending gauge" in page

    await restartable_nats.astop()
    try:
        started = time.monotonic()
        page = await scrape(api)
        assert time.monotonic() - started < 3
        assert sample(page, "launchdeck_nats_up") == 0
        assert sample(page, "launchdeck_consumer_pending", BUILDS_SERIES) is None
        assert sample(page, "launchdeck_outbox_pending") is not None  # Postgres still read
    finally:
        await restartable_nats.astart()

    async def back() -> bool:
        page = await scrape(api)
        return sample(page, "launchdeck_consumer_pending", BUILDS_SERIES) == 2

    await eventually("the consumer series back with NATS", back, timeout_s=20)
    await taken[0].ack()


def test_the_control_api_may_ask_for_every_consumer_it_reports() -> None:
    """The control-api's NATS user may call CONSUMER.INFO on each consumer /metrics reads."""
    access = access_of(SERVICE_CONTROL_API)
    assert access is not None
    for stream, consumer in DURABLE_CONSUMERS:
        assert f"$JS.API.CONSUMER.INFO.{stream}.{consumer}" in access.publish
