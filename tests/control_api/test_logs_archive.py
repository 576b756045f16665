"""The archive of a finished build's log (`build_logs`): a compressed NDJSON copy that the HTTP
and WebSocket endpoints serve once the LOGS stream no longer has the lines."""

from __future__ import annotations

import json
import uuid
import zlib

import asyncpg
from nats.js import JetStreamContext

from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.control_api.logs.archive import load_archived_log, persist_build_log
from tests.control_api.log_support import (
    AUTH,
    LogPublisher,
    create_build,
    text_of,
    view_until_closed,
)
from tests.control_api.support import Api


async def test_round_trip_keeps_every_line_once(
    api: Api, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    """persist → load gives 1..N once each (duplicates dropped), stored as zlib NDJSON."""
    build_id = await create_build(api)
    assert await load_archived_log(pool, build_id) is None
    worker = LogPublisher(js, build_id)
    await worker.lines(300, per_batch=70)
    await worker.restart(replay_from=281)
    await worker.finish("succeeded", lines=5)

    await persist_build_log(pool, js, build_id)
    lines = await load_archived_log(pool, build_id)
    assert lines is not None
    assert [line.seq for line in lines] == list(range(1, 306))
    assert [line.line for line in lines[:2]] == ["line 1", "line 2"]
    row = await pool.fetchrow(
        "SELECT lines, compressed FROM build_logs WHERE build_id = $1", uuid.UUID(build_id)
    )
    assert row["lines"] == 305
    first = json.loads(zlib.decompress(row["compressed"]).splitlines()[0])
    assert set(first) == {"seq", "ts", "stream", "line"}
    assert first["seq"] == 1


async def test_archive_serves_the_log_after_the_stream_lost_it(
    api: Api, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    """With the stream purged (age limit), HTTP and WebSocket answer from the archive, and
    persisting again cannot replace the archive with the now empty stream."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(80, per_batch=25)
    await worker.finish("failed")
    await persist_build_log(pool, js, build_id)
    await pool.execute("UPDATE builds SET status = 'failed' WHERE id = $1", uuid.UUID(build_id))
    await js.purge_stream(STREAM_LOGS, subject=build_log_subject(build_id))

    await persist_build_log(pool, js, build_id, eof_wait_s=0.1)
    assert len(await load_archived_log(pool, build_id) or []) == 80

    text = await api.call("GET", f"/api/v1/builds/{build_id}/logs?after_seq=70")
    assert text.body == "".join(f"{text_of(seq)}\n" for seq in range(71, 81))
    viewer = await api.client.ws_connect(
        f"/api/v1/builds/{build_id}/logs/ws?from_seq=11", headers=AUTH
    )
    viewed = await view_until_closed(viewer)
    assert viewed.seqs == list(range(11, 81))
    assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "failed"}]
