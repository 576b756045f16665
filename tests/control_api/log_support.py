"""Helpers of the log and WebSocket tests: publishing a build's log as the build-worker does,
creating builds through the API, and reading what a WebSocket viewer receives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import LogBatch, LogLine, LogStream
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import build_log_subject
from launchdeck.control_api.app import create_app
from tests.control_api.support import Api, ApiClient, make_settings, token, unique

ADMIN = token(["admin"])
AUTH = {"Authorization": f"Bearer {ADMIN}"}
DEADLINE_S = 30.0


def text_of(seq: int, width: int = 0) -> str:
    """The text of line `seq` (padded to `width` characters, for bulky logs)."""
    text = f"line {seq}"
    return text.ljust(width, ".") if width else text


class LogPublisher:
    """Publishes one build's log the way the build-worker does: batches of consecutive lines
    with a per-build seq starting at 1, and a last batch with `eof` and the final status."""

    def __init__(self, js: JetStreamContext, build_id: str, *, width: int = 0) -> None:
        self.js = js
        self.build_id = build_id
        self.subject = build_log_subject(build_id)
        self.attempt = 1
        self.next_seq = 1
        self.width = width

    def make_lines(self, first: int, count: int) -> list[LogLine]:
        streams: tuple[LogStream, ...] = ("stdout", "stderr", "system")
        return [
            LogLine(
                seq=seq,
                ts=datetime.now(UTC),
                stream=streams[seq % 3],
                line=text_of(seq, self.width),
            )
            for seq in range(first, first + count)
        ]

    async def publish(self, lines: list[LogLine], *, eof: bool = False, status: Any = None) -> None:
        batch = LogBatch(
            build_id=self.build_id, attempt=self.attempt, lines=lines, eof=eof, status=status
        )
        await self.js.publish(self.subject, encode(batch))

    async def lines(self, count: int, *, per_batch: int = 100) -> None:
        """Publish the next `count` lines."""
        end = self.next_seq + count
        while self.next_seq < end:
            n = min(per_batch, end - self.next_seq)
            await self.publish(self.make_lines(self.next_seq, n))
            self.next_seq += n

    async def restart(self, replay_from: int) -> None:
        """A new attempt after a crash: it re-publishes lines from `replay_from` (already stored
        once) before continuing, as a worker that cannot tell what reached the stream does."""
        self.attempt += 1
        await self.publish(self.make_lines(replay_from, self.next_seq - replay_from))

    async def finish(self, status: BuildStatus = "succeeded", *, lines: int = 0) -> None:
        """The eof batch (with `lines` last lines in it) and the final status."""
        await self.publish(self.make_lines(self.next_seq, lines), eof=True, status=status)
        self.next_seq += lines

    @property
    def published(self) -> int:
        return self.next_seq - 1


async def create_project_build(api: Api) -> tuple[dict[str, Any], str]:
    """A new project and a queued build of it, created through the API: (project, build id)."""
    project = await api.create_project(unique("logs"))
    reply = await api.call("POST", f"/api/v1/projects/{project['id']}/builds")
    assert reply.status == 202, reply.body
    return project, str(reply.body["id"])


async def create_build(api: Api) -> str:
    """A queued build of a new project, created through the API; its id."""
    _, build_id = await create_project_build(api)
    return build_id


@asynccontextmanager
async def running_app(
    pool: asyncpg.Pool,
    database_url: str,
    nats_url: str,
    nc: Client,
    js: JetStreamContext,
    **settings: Any,
) -> AsyncIterator[TestClient[Any, Any]]:
    """The control-api in-process (no background tasks) with some settings overridden."""
    app = create_app(
        replace(make_settings(database_url, nats_url), **settings),
        pool,
        nc,
        js,
        background_tasks=False,
    )
    client: TestClient[Any, Any] = ApiClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Viewed:
    """What a WebSocket viewer received."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "log"]

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.logs]

    @property
    def ends(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "end"]


async def receive_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE_S):
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def view_until_closed(
    ws: aiohttp.ClientWebSocketResponse, viewed: Viewed | None = None
) -> Viewed:
    """Every frame until the server closes the socket."""
    viewed = viewed or Viewed()
    async with asyncio.timeout(DEADLINE_S):
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            viewed.frames.append(json.loads(msg.data))
    viewed.close_code = ws.close_code
    return viewed


async def view_until_seq(
    ws: aiohttp.ClientWebSocketResponse, seq: int, viewed: Viewed | None = None
) -> Viewed:
    """Frames until the log line `seq` has arrived (the socket stays open)."""
    viewed = viewed or Viewed()
    while not viewed.seqs or viewed.seqs[-1] < seq:
        viewed.frames.append(await receive_frame(ws))
    return viewed
