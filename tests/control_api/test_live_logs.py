"""The shared reader of a running build's log (`logs.live`): every viewer gets 1..N once and in
order whether it came before the feed started, during or after; a viewer the feed no longer
keeps lines for, or whose feed stops, carries on from its own consumer; a feed ends with its
last viewer. Also over WebSockets: many viewers of one build share one feed."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

import pytest
from nats.js import JetStreamContext

from launchdeck.control_api.logs import live as live_logs
from launchdeck.control_api.logs.live import LiveLog, LiveLogs, Push, follow_live_log
from launchdeck.control_api.logs.stream import LogChunk, LogEnd
from launchdeck.control_api.ws.channels import LIVE_LOGS
from tests.control_api.log_support import (
    AUTH,
    LogPublisher,
    Viewed,
    create_build,
    view_until_closed,
    view_until_seq,
)
from tests.control_api.support import Api
from tests.polling import eventually


class Viewer:
    """Reads `follow_live_log` in a task, keeping what it got; with `decline_every`, also takes
    pushed lines, declining every that-many-th push (its task then reads them)."""

    def __init__(
        self,
        feed: LiveLog,
        js: JetStreamContext,
        from_seq: int = 1,
        *,
        decline_every: int | None = None,
    ) -> None:
        self.chunks: list[LogChunk] = []
        self.pushes = self.declined = 0
        self.decline_every = decline_every
        push = self._push if decline_every is not None else None
        self.task = asyncio.create_task(self._read(feed, js, from_seq, push))

    def _push(self, chunk: LogChunk) -> bool:
        self.pushes += 1
        assert self.decline_every is not None
        if self.pushes % self.decline_every == 0:
            self.declined += 1
            return False
        self.chunks.append(chunk)
        return True

    async def _read(
        self, feed: LiveLog, js: JetStreamContext, from_seq: int, push: Push | None
    ) -> None:
        chunks = follow_live_log(feed, js, from_seq=from_seq, push=push)
        async with aclosing(chunks):
            async for chunk in chunks:
                self.chunks.append(chunk)

    @property
    def parts(self) -> list[LogChunk]:
        """The chunks got, joined ones taken apart."""
        return [part for chunk in self.chunks for part in (chunk.parts or (chunk,))]

    @property
    def seqs(self) -> list[int]:
        return [line.seq for chunk in self.chunks for line in chunk.lines]

    @property
    def ends(self) -> list[LogEnd]:
        return [chunk.end for chunk in self.chunks if chunk.end is not None]

    async def finished(self) -> None:
        async with asyncio.timeout(30):
            await self.task


async def test_viewers_before_and_after_the_feed_start_get_every_line_once(
    js: JetStreamContext,
) -> None:
    """The feed starts mid-log; a viewer from line 1 reads the lines before it on its own, then
    the feed's, and a retried batch straddling the hand-over is not seen twice."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(100, per_batch=30)
    feeds = LiveLogs(js)
    async with feeds.watch(build_id) as feed:
        first = Viewer(feed, js)
        await feed.started()
        assert feed.start_stream_seq > 1  # after the 4 batches already stored
        await worker.lines(50, per_batch=20)
        await worker.restart(replay_from=81)  # 81..150 again, after the feed's start
        async with feeds.watch(build_id) as same:
            assert same is feed
            assert feeds.count == 1
            late = Viewer(feed, js)
            middle = Viewer(feed, js, from_seq=120)
            await worker.lines(60, per_batch=25)
            await worker.finish("succeeded", lines=2)
            for viewer in (first, late, middle):
                await viewer.finished()
    assert first.seqs == late.seqs == list(range(1, 213))
    assert middle.seqs == list(range(120, 213))
    for viewer in (first, late, middle):
        assert viewer.ends == [LogEnd("succeeded")]
    assert feeds.count == 0


async def test_shared_chunks_are_shared_objects(js: JetStreamContext) -> None:
    """Two viewers of the feed get the same chunk objects (what they encode is made once)."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    feeds = LiveLogs(js)
    async with feeds.watch(build_id) as feed:
        one, two = Viewer(feed, js), Viewer(feed, js)
        await feed.started()
        await worker.lines(40, per_batch=10)
        await worker.finish("failed")
        await one.finished()
        await two.finished()
    assert one.seqs == two.seqs == list(range(1, 41))
    assert all(a is b for a, b in zip(one.parts, two.parts, strict=True))


async def test_pushed_and_read_lines_make_one_ordered_log(js: JetStreamContext) -> None:
    """Viewers that keep up get lines pushed by the feed; one declining now and then reads
    those itself: each gets 1..N once, in order, and the end through its own task."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    feeds = LiveLogs(js)
    async with feeds.watch(build_id) as feed:
        taking = Viewer(feed, js, decline_every=1_000_000)
        choosy = Viewer(feed, js, decline_every=3)
        await feed.started()
        for _ in range(12):  # one batch at a time, each seen by the viewers before the next
            await worker.lines(10, per_batch=10)
            await eventually(
                "the viewers to have the batch",
                lambda: taking.seqs[-1:] == choosy.seqs[-1:] == [worker.published],
            )
        await worker.finish("succeeded", lines=1)
        await taking.finished()
        await choosy.finished()
    assert taking.seqs == choosy.seqs == list(range(1, 122))
    assert taking.pushes >= 10
    assert choosy.declined >= 2
    assert taking.ends == choosy.ends == [LogEnd("succeeded")]


async def test_a_viewer_behind_what_the_feed_keeps_reads_on_its_own(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks dropped by the feed before a viewer got to them: it continues from its own
    consumer, without a gap."""
    monkeypatch.setattr(live_logs, "RETAIN_LINES", 50)
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    feeds = LiveLogs(js)
    async with feeds.watch(build_id) as feed:
        await feed.started()
        await worker.lines(300, per_batch=20)
        await worker.finish("succeeded")
        async with asyncio.timeout(30):
            await feed.wait_beyond(15)  # 15 batches + the eof read
        assert feed.chunks_from(0) is None  # the first ones are gone
        viewer = Viewer(feed, js)
        await viewer.finished()
    assert viewer.seqs == list(range(1, 301))
    assert viewer.ends == [LogEnd("succeeded")]


async def test_a_stopped_feed_leaves_its_viewer_on_its_own_consumer(js: JetStreamContext) -> None:
    """A feed that stops without the end (its reader cancelled): the viewer still gets the rest."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    feed = LiveLog(js, build_id)
    viewer = Viewer(feed, js)
    await feed.started()
    await worker.lines(30, per_batch=10)
    await feed.stop()
    await worker.lines(30, per_batch=10)
    await worker.finish("succeeded")
    await viewer.finished()
    assert viewer.seqs == list(range(1, 61))
    assert viewer.ends == [LogEnd("succeeded")]


async def test_websocket_viewers_of_a_build_share_one_feed(api: Api, js: JetStreamContext) -> None:
    """Ten viewers (batched or not) of a running build: one feed; 1..N each; none once gone."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(25, per_batch=10)
    path = f"/api/v1/builds/{build_id}/logs/ws"
    sockets = [
        await api.client.ws_connect(path + ("?batch=true" if i % 2 else ""), headers=AUTH)
        for i in range(10)
    ]
    seen = [await view_until_seq(ws, 25) for ws in sockets[::2]]
    feeds = api.client.app[LIVE_LOGS]
    assert feeds.count == 1
    await worker.lines(75, per_batch=10)
    await worker.finish("succeeded")
    viewed: list[Viewed] = []
    for i, ws in enumerate(sockets):
        viewed.append(await view_until_closed(ws, seen[i // 2] if i % 2 == 0 else None))
    for i, view in enumerate(viewed):
        if i % 2:
            lines = [x["seq"] for f in view.frames if f["type"] == "logs" for x in f["lines"]]
        else:
            lines = view.seqs
        assert lines == list(range(1, 101)), i
        assert view.frames[-1]["type"] == "end"
    await eventually("the feed to stop with its last viewer", lambda: feeds.count == 0)
