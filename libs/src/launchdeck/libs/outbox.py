"""Transactional outbox: a state change and the command it implies commit together.

`enqueue` is called inside the caller's transaction. `OutboxRelay` publishes pending rows to
JetStream with `Nats-Msg-Id` = the row id (so a publish retried after a crash is deduplicated by
the stream), then deletes them. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays
(several control-api replicas) never publish the same row at the same time; `LISTEN/NOTIFY` wakes
the relay at once and a short poll is the fallback. While the NATS connection is down the relay
waits for it rather than publishing into the client's reconnect buffer (each try would time out
with the rows locked); rows whose publish fails stay, and are tried again.

The table (created by the control-api migrations):
    outbox(id uuid primary key, subject text, payload bytea, created_at timestamptz,
           attempts int, last_error text)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.libs.jetstream import client_of, wait_connected
from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import Outage

log = get_logger(__name__)

NOTIFY_CHANNEL = "ld_outbox"


async def enqueue(
    conn: Any, subject: str, message: msgspec.Struct, msg_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Write `message` for `subject` to the outbox, in the caller's transaction."""
    row_id = msg_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)",
        row_id,
        subject,
        encode(message),
    )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return row_id


def _alive(conn: Any) -> bool:
    """Whether a pool connection still works: one whose server went away is closed, or already
    detached by the pool (asyncpg then refuses every call on it)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        batch_size: int = 100,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._js = js
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled (or until the NATS connection is closed for good)."""
        nc = client_of(self._js)
        outage = Outage("outbox relay")
        listener = await self._listen(None)
        try:
            while True:
                self._wake.clear()
                await wait_connected(nc)
                try:
                    if listener is None or not _alive(listener):
                        # Postgres restarted under us: LISTEN again (until then, the poll).
                        dead, listener = listener, None
                        listener = await self._listen(dead)
                    published = await self.relay_once()
                except (OSError, asyncpg.PostgresError) as exc:
                    outage.failed(exc)
                    published = 0
                else:
                    outage.over()
                if published >= self._batch_size:
                    continue  # more may be waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
        finally:
            if listener is not None:
                try:
                    if _alive(listener):
                        await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                finally:
                    await self._pool.release(listener)

    async def _listen(self, previous: Any | None) -> Any:
        """A pool connection LISTENing for new rows, in place of `previous` (a dead one)."""
        if previous is not None:
            with contextlib.suppress(Exception):  # dead already: the pool replaces it
                await self._pool.release(previous)
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            await self._pool.release(listener)
            raise
        self._wake.set()  # rows may have come while nobody listened
        return listener

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; return how many were published."""
        published = 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, subject, payload FROM outbox
                   ORDER BY created_at
                   LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            for row in rows:
                try:
                    # PubAck.duplicate (already stored under this id) also counts as success.
                    await self._js.publish(
                        row["subject"],
                        bytes(row["payload"]),
                        headers={"Nats-Msg-Id": str(row["id"])},
                        timeout=5.0,
                    )
                except Exception as exc:  # any publish failure: keep the row, retry later
                    await conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                        row["id"],
                        str(exc)[:500],
                    )
                    log.warning("outbox_publish_failed", subject=row["subject"], error=str(exc))
                    break
                await conn.execute("DELETE FROM outbox WHERE id = $1", row["id"])
                published += 1
        return published
