"""`GET /api/v1/builds/{id}/logs`: the same lines a WebSocket viewer gets, as text or NDJSON,
from `after_seq`; problems for unknown builds, bad parameters and missing tokens."""

from __future__ import annotations

import json
import uuid
from typing import Any

from nats.js import JetStreamContext

from tests.control_api.log_support import (
    AUTH,
    LogPublisher,
    create_build,
    create_project_build,
    text_of,
    view_until_closed,
)
from tests.control_api.support import Api, token

NDJSON = {"Accept": "application/x-ndjson"}


def logs_path(build_id: str, query: str = "") -> str:
    return f"/api/v1/builds/{build_id}/logs{query}"


async def get_ndjson(api: Api, path: str) -> list[dict[str, Any]]:
    async with api.client.get(path, headers={**AUTH, **NDJSON}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        body = await resp.text()
    assert body == "" or body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]


async def test_text_and_ndjson_carry_the_lines_the_websocket_sends(
    api: Api, js: JetStreamContext
) -> None:
    """Text has one line per log line; NDJSON has the LogLine fields; both match the viewer's."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(140, per_batch=30)
    await worker.restart(replay_from=101)
    await worker.lines(60, per_batch=30)
    await worker.finish("succeeded", lines=1)

    text = await api.call("GET", logs_path(build_id))
    assert text.status == 200
    assert text.content_type == "text/plain; charset=utf-8"
    assert text.body == "".join(f"{text_of(seq)}\n" for seq in range(1, 202))

    rows = await get_ndjson(api, logs_path(build_id))
    assert [r["seq"] for r in rows] == list(range(1, 202))
    assert all(set(r) == {"build_id", "seq", "ts", "stream", "line"} for r in rows)
    assert all(r["build_id"] == build_id for r in rows)

    viewer = await api.client.ws_connect(f"/api/v1/builds/{build_id}/logs/ws", headers=AUTH)
    viewed = await view_until_closed(viewer)
    assert [
        {k: f[k] for k in ("build_id", "seq", "ts", "stream", "line")} for f in viewed.logs
    ] == rows


async def test_after_seq_and_a_log_in_progress(api: Api, js: JetStreamContext) -> None:
    """?after_seq=N returns the lines after N; a running build's log is what exists so far."""
    build_id = await create_build(api)
    empty = await api.call("GET", logs_path(build_id))
    assert (empty.status, empty.body) == (200, "")

    worker = LogPublisher(js, build_id)
    await worker.lines(25, per_batch=10)
    so_far = await get_ndjson(api, logs_path(build_id))
    assert [r["seq"] for r in so_far] == list(range(1, 26))
    assert await get_ndjson(api, logs_path(build_id, "?after_seq=24")) == so_far[-1:]
    tail = await api.call("GET", logs_path(build_id, "?after_seq=20"))
    assert tail.body == "".join(f"{text_of(seq)}\n" for seq in range(21, 26))
    past = await api.call("GET", logs_path(build_id, "?after_seq=25"))
    assert (past.status, past.body) == (200, "")


async def test_bad_requests_are_problems(api: Api) -> None:
    """Unknown or malformed id → 404; another project's token → 404; bad after_seq → 422;
    no token → 401; all as problem+json."""
    _, build_id = await create_project_build(api)
    other_project, _ = await create_project_build(api)
    foreign = token(["read"], project_id=other_project["id"])
    cases = [
        (logs_path(str(uuid.uuid4())), None, 404),
        (logs_path("42"), None, 404),
        (logs_path(build_id), foreign, 404),
        (logs_path(build_id, "?after_seq=-1"), None, 422),
        (logs_path(build_id, "?after_seq=ten"), None, 422),
        (logs_path(build_id), "", 401),
    ]
    for path, bearer, status in cases:
        reply = await api.call("GET", path, token=bearer)
        assert reply.status == status, (path, reply.body)
        assert reply.content_type.startswith("application/problem+json")
    invalid = await api.call("GET", logs_path(build_id, "?after_seq=-1"))
    assert invalid.body["errors"] == [{"field": "after_seq", "message": "must be at least 0"}]
