"""Reading a build's log from the LOGS stream (`logstream`): one ordered consumer for history and
live, seq order, no gap, no duplicate, an end at the eof batch."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import aclosing
from typing import Any

import pytest
from nats.js import JetStreamContext

from launchdeck.contracts.messages import LogLine
from launchdeck.control_api.logs import stream as logstream
from launchdeck.control_api.logs.stream import (
    LogEnd,
    iter_finished_log_chunks,
    iter_log,
)
from tests.control_api.log_support import LogPublisher
from tests.polling import eventually

Item = LogLine | LogEnd


async def collect(
    js: JetStreamContext, build_id: str, *, from_seq: int = 1, follow: bool = True
) -> list[Item]:
    items: list[Item] = []
    log = iter_log(js, build_id, from_seq=from_seq, follow=follow)
    async with asyncio.timeout(30), aclosing(log):
        async for item in log:
            items.append(item)
    return items


def seqs(items: list[Item]) -> list[int]:
    return [i.seq for i in items if isinstance(i, LogLine)]


async def test_duplicates_across_attempts_are_dropped(js: JetStreamContext) -> None:
    """Lines repeated by attempt 2 after a crash appear once: exactly 1..N, then the end."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(250, per_batch=40)
    await worker.restart(replay_from=201)  # 201..250 again
    await worker.lines(150, per_batch=40)
    await worker.finish("failed", lines=3)

    items = await collect(js, build_id)
    assert seqs(items) == list(range(1, 404))
    assert items[-1] == LogEnd("failed")
    lines = [i for i in items if isinstance(i, LogLine)]
    assert lines[99].line == "line 100"


async def test_from_seq_skips_what_the_reader_has(js: JetStreamContext) -> None:
    """from_seq=N yields N.. onwards, whatever batch N sits in."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(120, per_batch=50)
    await worker.finish("succeeded")

    assert seqs(await collect(js, build_id, from_seq=77)) == list(range(77, 121))
    assert await collect(js, build_id, from_seq=121) == [LogEnd("succeeded")]


async def test_without_follow_stops_when_caught_up(js: JetStreamContext) -> None:
    """follow=False returns what the stream holds now (no end yet), and nothing for no log."""
    build_id = str(uuid.uuid4())
    assert await collect(js, str(uuid.uuid4()), follow=False) == []
    worker = LogPublisher(js, build_id)
    await worker.lines(30, per_batch=7)
    items = await collect(js, build_id, follow=False)
    assert seqs(items) == list(range(1, 31))
    assert not any(isinstance(i, LogEnd) for i in items)


async def test_follow_continues_from_history_into_live(js: JetStreamContext) -> None:
    """A reader started mid-build gets the history, then the lines published afterwards."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(50)
    received: list[Item] = []
    caught_up = asyncio.Event()

    async def read() -> None:
        async with aclosing(iter_log(js, build_id)) as log:
            async for item in log:
                received.append(item)
                if isinstance(item, LogLine) and item.seq == 50:
                    caught_up.set()

    reader = asyncio.create_task(read())
    async with asyncio.timeout(30):
        await caught_up.wait()
        await worker.lines(70, per_batch=9)
        await worker.finish("succeeded")
        await reader
    assert seqs(received) == list(range(1, 121))
    assert received[-1] == LogEnd("succeeded")


async def test_twenty_thousand_lines_replay_fast(js: JetStreamContext) -> None:
    """A finished 20,000-line log (batches of 100, as the worker sends) replays in under 1 s."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(20_000, per_batch=100)
    await worker.finish("succeeded")

    started = time.perf_counter()
    items = await collect(js, build_id)
    elapsed = time.perf_counter() - started
    assert seqs(items) == list(range(1, 20_001))
    assert elapsed < 1.0, f"replay took {elapsed:.3f} s"


async def test_finished_log_waits_briefly_for_a_late_eof(js: JetStreamContext) -> None:
    """For a build recorded as finished, an eof still on its way is waited for; none → stop."""
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(10)

    async def read(wait_s: float) -> list[Item]:
        items: list[Item] = []
        chunks = iter_finished_log_chunks(js, build_id, eof_wait_s=wait_s)
        async with aclosing(chunks):
            async for chunk in chunks:
                items.extend(chunk.lines)
                if chunk.end is not None:
                    items.append(chunk.end)
        return items

    assert seqs(await read(0.2)) == list(range(1, 11))  # no eof: ends without LogEnd

    reader = asyncio.create_task(read(30.0))
    await worker.finish("cancelled", lines=2)
    items = await asyncio.wait_for(reader, 30)
    assert seqs(items) == list(range(1, 13))
    assert items[-1] == LogEnd("cancelled")


async def test_a_quiet_live_reader_resubscribes_where_it_was(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a quiet spell the reader re-creates its consumer from its stream position (what
    keeps a viewer alive through a NATS restart): nothing is repeated or lost."""
    monkeypatch.setattr(logstream, "IDLE_RESUBSCRIBE_S", 0.2)
    subscribes = 0
    real_subscribe = logstream.subscribe_from

    async def counting_subscribe(*args: Any, **kwargs: Any) -> Any:
        nonlocal subscribes
        subscribes += 1
        return await real_subscribe(*args, **kwargs)

    monkeypatch.setattr(logstream, "subscribe_from", counting_subscribe)
    build_id = str(uuid.uuid4())
    worker = LogPublisher(js, build_id)
    await worker.lines(30, per_batch=10)
    reader = asyncio.create_task(collect(js, build_id))
    # Quiet for two idle periods: two fresh consumers.
    await eventually("the reader to re-subscribe", lambda: subscribes >= 3, 10)
    await worker.lines(20, per_batch=10)
    await worker.finish("succeeded")
    items = await reader
    assert seqs(items) == list(range(1, 51))
    assert items[-1] == LogEnd("succeeded")
