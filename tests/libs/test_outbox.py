"""The outbox relay against real Postgres and NATS: a row leaves the outbox only once published.

The guarantee pinned here is the reason the outbox exists: a command committed with its state
change is never lost, so a publish that fails must leave its row (with `attempts` raised and the
error noted) for the next pass.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildConfig, BuildRequested
from launchdeck.libs import db
from launchdeck.libs.outbox import OutboxRelay, enqueue


def command() -> BuildRequested:
    return BuildRequested(
        build_id=str(uuid.uuid4()),
        project_id=str(uuid.uuid4()),
        project_name="site",
        number=1,
        repo_url="/nowhere",
        ref="main",
        config=BuildConfig(),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's database, with an empty outbox (a row left by one test would be
    the first the next test's relay tries)."""
    pool = await db.create_pool(database_url, max_size=3)
    try:
        await pool.execute("DELETE FROM outbox")
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def test_stream(js: JetStreamContext) -> AsyncIterator[tuple[str, str]]:
    """A stream of the test's own (so no service's consumer sees what the relay publishes):
    (stream name, subject)."""
    name = f"OUTBOX_TEST_{uuid.uuid4().hex[:8].upper()}"
    subject = f"outbox-test.{name.lower()}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    try:
        yield name, subject
    finally:
        await js.delete_stream(name)


async def test_published_row_is_stored_under_its_id_and_deleted(
    pool: asyncpg.Pool, js: JetStreamContext, test_stream: tuple[str, str]
) -> None:
    """A publish the stream acknowledges: the message carries the row id, the row is gone."""
    stream, subject = test_stream
    sent = command()
    async with pool.acquire() as conn:
        row_id = await enqueue(conn, subject, sent)

    assert await OutboxRelay(pool, js).relay_once() == 1

    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", row_id) == 0
    stored = await js.get_last_msg(stream, subject)
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == str(row_id)
    assert stored.data is not None
    assert decode(stored.data, BuildRequested) == sent


async def test_failed_publish_keeps_the_row_with_attempts_raised(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A subject no stream covers: the publish fails for real (no stream answers), the row
    stays with attempts 1 and the error; a second pass tries again and counts 2."""
    nowhere = f"outbox-test.nowhere.{uuid.uuid4().hex}"
    async with pool.acquire() as conn:
        row_id = await enqueue(conn, nowhere, command())
    relay = OutboxRelay(pool, js)

    assert await relay.relay_once() == 0

    row = await pool.fetchrow("SELECT attempts, last_error FROM outbox WHERE id = $1", row_id)
    assert row is not None, "the row of a failed publish was deleted: its command is lost"
    assert row["attempts"] == 1
    assert row["last_error"]

    assert await relay.relay_once() == 0
    assert await pool.fetchval("SELECT attempts FROM outbox WHERE id = $1", row_id) == 2
