"""A running app's logs: `GET /api/v1/projects/{id}/logs` (recent lines as text or NDJSON,
`?tail=`, `?since=` with `?limit=`), `…/logs/ws` (recent then live, resumable by cursor) and the
`project:<id>:logs` channel of `/api/v1/ws`. The lines are published as the deploy-engine
publishes them — `AppLogBatch`es on `ld.logs.app.<project>`, by the deploy-engine's own NATS
user — and read back by the real app. Another project's lines never show."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.api import app_log_text
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import AppLogBatch, LogBatch, LogLine, LogStream
from launchdeck.contracts.subjects import app_log_subject, build_log_subject
from launchdeck.libs.jetstream import connect
from launchdeck.libs.nats_access import access_of
from tests.control_api.log_support import ADMIN, AUTH, receive_frame
from tests.control_api.support import Api, unique
from tests.nats_auth import login_url

NDJSON = {"Accept": "application/x-ndjson"}


@pytest_asyncio.fixture(loop_scope="session")
async def engine_js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream as the deploy-engine's NATS user: its grants are what lets it publish."""
    access = access_of("deploy-engine")
    assert access is not None
    nc: Client = await connect(
        login_url(nats_url, "deploy-engine"), name=access.service, inbox_prefix=access.inbox_prefix
    )
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


class App:
    """One deployment's processes printing, published as the deploy-engine does."""

    def __init__(self, js: JetStreamContext, project_id: str) -> None:
        self.js = js
        self.project_id = project_id
        self.deployment_id = str(uuid.uuid4())
        self.seqs: dict[str, int] = {}
        self.printed: list[tuple[str, datetime, LogStream, str]] = []  # process, ts, stream, text

    async def prints(
        self, process: str, *texts: str, at: datetime | None = None, stream: LogStream = "stdout"
    ) -> None:
        lines = []
        for n, text in enumerate(texts):
            seq = self.seqs[process] = self.seqs.get(process, 0) + 1
            ts = (at or datetime.now(UTC)) + timedelta(milliseconds=n)
            lines.append(LogLine(seq=seq, ts=ts, stream=stream, line=text))
            self.printed.append((process, ts, stream, text))
        batch = AppLogBatch(
            project_id=self.project_id,
            deployment_id=self.deployment_id,
            process=process,
            lines=lines,
        )
        await self.js.publish(app_log_subject(self.project_id), encode(batch))

    def text(self, last: int | None = None) -> str:
        """What the text endpoint shows for the lines printed (the last `last` of them)."""
        shown = self.printed if last is None else self.printed[len(self.printed) - last :]
        return "".join(
            app_log_text(ts, process, self.deployment_id, text) + "\n"
            for process, ts, _, text in shown
        )


async def new_app(api: Api, js: JetStreamContext) -> tuple[dict[str, Any], App]:
    project = await api.create_project(unique("app"))
    return project, App(js, project["id"])


def logs_path(project: dict[str, Any], query: str = "") -> str:
    return f"/api/v1/projects/{project['name']}/logs{query}"


async def test_recent_lines_as_text_and_ndjson(api: Api, engine_js: JetStreamContext) -> None:
    """Every process and deployment of the project, in the order published; text is
    `time process[deployment] line`, NDJSON has every field; `?tail=N` cuts inside a batch;
    another project's lines are not there."""
    project, app = await new_app(api, engine_js)
    _, other = await new_app(api, engine_js)
    await app.prints("release", "migrating", "migrated")
    await other.prints("web", "someone else's line")
    await app.prints("web", "listening on 4100", "GET / 200")
    await app.prints("worker", "job 1 failed", stream="stderr")

    text = await api.call("GET", logs_path(project))
    assert text.status == 200
    assert text.content_type == "text/plain; charset=utf-8"
    assert text.body == app.text()
    assert f" web[{app.deployment_id[:8]}] listening on 4100\n" in text.body

    tail = await api.call("GET", logs_path(project, "?tail=2"))
    assert tail.body == app.text(last=2)
    assert (await api.call("GET", logs_path(project, "?tail=0"))).body == ""

    async with api.client.get(logs_path(project, "?tail=3"), headers={**AUTH, **NDJSON}) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        rows = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [(r["process"], r["seq"], r["stream"], r["line"]) for r in rows] == [
        ("web", 1, "stdout", "listening on 4100"),
        ("web", 2, "stdout", "GET / 200"),
        ("worker", 1, "stderr", "job 1 failed"),
    ]
    assert {r["project_id"] for r in rows} == {project["id"]}
    assert {r["deployment_id"] for r in rows} == {app.deployment_id}
    assert rows[0]["cursor"] == rows[1]["cursor"] < rows[2]["cursor"]


async def test_a_project_without_an_app_has_an_empty_log(api: Api) -> None:
    """Nothing published yet: 200 and nothing, whatever is asked."""
    project = await api.create_project(unique("quiet"))
    for query in ("", "?tail=5", "?since=10m", "?from_cursor=1"):
        reply = await api.call("GET", logs_path(project, query))
        assert (reply.status, reply.body) == (200, ""), query


async def test_the_tail_reaches_back_past_other_subjects(
    api: Api, engine_js: JetStreamContext, js: JetStreamContext
) -> None:
    """Thousands of other messages (build logs) between two of the app's batches: `?tail=3`
    still finds lines of both (the start is searched back in growing windows)."""
    project, app = await new_app(api, engine_js)
    await app.prints("web", "first", "second")
    noisy = str(uuid.uuid4())
    line = LogLine(seq=1, ts=datetime.now(UTC), stream="stdout", line="noise")
    for _ in range(1500):
        await js.publish(build_log_subject(noisy), encode(LogBatch(build_id=noisy, lines=[line])))
    await app.prints("web", "third")
    reply = await api.call("GET", logs_path(project, "?tail=3"))
    assert reply.body == app.text()
    assert (await api.call("GET", logs_path(project, "?tail=1"))).body == app.text(last=1)


async def test_since_and_limit(api: Api, engine_js: JetStreamContext) -> None:
    """`?since=` (RFC 3339, or a duration ago) keeps the lines printed from then on; `?limit=`
    the first N of them; a time after the newest line gives nothing, at once."""
    project, app = await new_app(api, engine_js)
    now = datetime.now(UTC)
    await app.prints("web", "two hours ago", at=now - timedelta(hours=2))
    await app.prints("web", "a", "b", "c", at=now)
    reply = await api.call("GET", logs_path(project, "?since=1h"))
    assert reply.body == app.text(last=3)
    since = (now - timedelta(minutes=30)).isoformat()
    first = await api.call("GET", logs_path(project), params={"since": since, "limit": "2"})
    assert first.body == "".join(app.text(last=3).splitlines(keepends=True)[:2])
    everything = await api.call("GET", logs_path(project, "?since=1d"))
    assert everything.body == app.text()
    started = datetime.now(UTC)
    future = (now + timedelta(days=1)).isoformat()
    assert (await api.call("GET", logs_path(project), params={"since": future})).body == ""
    assert datetime.now(UTC) - started < timedelta(seconds=3)


async def test_bad_parameters_are_422(api: Api) -> None:
    """Parameters that do not parse or do not go together name themselves in a 422."""
    project = await api.create_project(unique("bad"))
    for query, field in (
        ("?tail=-1", "tail"),
        ("?tail=x", "tail"),
        ("?tail=10001", "tail"),
        ("?since=yesterday", "since"),
        ("?tail=5&since=10m", "since"),
        ("?since=10m&limit=0", "limit"),
        ("?follow=1", "follow"),
        ("?from_cursor=0", "from_cursor"),
    ):
        reply = await api.call("GET", logs_path(project, query))
        assert reply.status == 422, (query, reply.body)
        assert reply.body["errors"][0]["field"] == field, query


async def test_websocket_sends_recent_then_live_lines_and_resumes_by_cursor(
    api: Api, engine_js: JetStreamContext
) -> None:
    """`…/logs/ws?tail=2`: the last 2 lines, then each new one as it is published, as
    `app_log` frames; reconnecting with `from_cursor` starts at that line's batch."""
    project, app = await new_app(api, engine_js)
    await app.prints("web", "one", "two", "three")
    ws = await api.client.ws_connect(logs_path(project, "/ws?tail=2"), headers=AUTH)
    recent = [await receive_frame(ws), await receive_frame(ws)]
    assert [(f["type"], f["line"], f["seq"]) for f in recent] == [
        ("app_log", "two", 2),
        ("app_log", "three", 3),
    ]
    assert set(recent[0]) == {
        "type", "project_id", "deployment_id", "process", "seq", "ts", "stream", "line", "cursor"
    }  # fmt: skip
    await app.prints("worker", "live!", stream="stderr")
    live = await receive_frame(ws)
    assert (live["process"], live["stream"], live["line"]) == ("worker", "stderr", "live!")
    await ws.close()

    again = await api.client.ws_connect(
        logs_path(project, f"/ws?from_cursor={live['cursor']}"), headers=AUTH
    )
    assert (await receive_frame(again))["line"] == "live!"
    await again.close()


async def test_the_logs_channel_of_the_multiplexed_socket(
    api: Api, engine_js: JetStreamContext
) -> None:
    """`project:<name>:logs` with `tail`: the recent lines then live ones, each with its channel;
    another project's lines never arrive; unsubscribe stops it."""
    project, app = await new_app(api, engine_js)
    _, other = await new_app(api, engine_js)
    await app.prints("web", "old", "recent")
    ws = await api.client.ws_connect(f"/api/v1/ws?token={ADMIN}")
    channel = f"project:{project['name']}:logs"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel, "tail": 1}))
    assert await receive_frame(ws) == {"type": "subscribed", "channel": channel}
    first = await receive_frame(ws)
    assert (first["type"], first["channel"], first["line"]) == ("app_log", channel, "recent")
    await other.prints("web", "not yours")
    await app.prints("web", "new")
    second = await receive_frame(ws)
    assert (second["line"], second["deployment_id"]) == ("new", app.deployment_id)
    await ws.send_str(json.dumps({"type": "unsubscribe", "channel": channel}))
    assert await receive_frame(ws) == {"type": "unsubscribed", "channel": channel}

    stranger = f"project:{uuid.uuid4()}:logs"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": stranger}))
    assert (await receive_frame(ws))["type"] == "error"
    await ws.close()
