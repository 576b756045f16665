"""The build log publisher: seq numbering, batching, masking, the size cap and the final batch;
and with NATS away: the bounded buffer, the line explaining dropped lines, never waiting forever."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.logs import (
    MAX_BATCH_LINES,
    LogPublisher,
    LogPublishError,
    read_log_tail,
)
from launchdeck.build_worker.run import run_command
from tests.build_worker.streams import log_batches, log_lines
from tests.libs.support import RestartableNats
from tests.polling import eventually


async def test_lines_are_numbered_batched_and_end_with_eof(js: JetStreamContext) -> None:
    """Seq runs 1..N across batches (100 lines when the sender is free, more gathered while it
    is busy); the last batch has eof and status."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(js, build_id, attempt=1)
    for i in range(250):
        logs.write("stdout", f"line {i}")
    logs.system("done")
    await logs.close("succeeded")

    batches = await log_batches(js, build_id)
    lines = [line for batch in batches for line in batch.lines]
    assert [line.seq for line in lines] == list(range(1, 252))
    assert [line.line for line in lines[:250]] == [f"line {i}" for i in range(250)]
    assert (lines[-1].stream, lines[-1].line) == ("system", "done")
    assert len(batches[0].lines) == 100  # the sender was free: the first 100 went at once
    assert all(len(batch.lines) <= MAX_BATCH_LINES for batch in batches)
    assert [b.eof for b in batches] == [False] * (len(batches) - 1) + [True]
    assert batches[-1].status == "succeeded"
    tail = await read_log_tail(js, build_id)
    assert (tail.last_seq, tail.finished, tail.status) == (251, True, "succeeded")


async def test_secrets_are_masked_before_publishing(js: JetStreamContext) -> None:
    """A secret value never reaches the LOGS stream, in output or system lines."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(js, build_id, attempt=1, secrets=["tok-123456"])
    logs.add_secrets(["s3cr3t"])
    logs.write("stdout", "Authorization: tok-123456")
    logs.write("stderr", "password s3cr3t rejected")
    logs.system("using tok-123456")
    await logs.close("failed")
    lines = [line.line for b in await log_batches(js, build_id) for line in b.lines]
    assert lines == ["Authorization: ***", "password *** rejected", "using ***"]


async def test_log_cap_drops_the_rest_after_one_marker(js: JetStreamContext) -> None:
    """Past the byte cap one marker line is logged, output is dropped, system lines still pass."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(js, build_id, attempt=1, max_bytes=1000)
    for i in range(100):
        logs.write("stdout", f"{i:09d}")  # 10 bytes with its newline: 100 fit exactly
    for i in range(50):
        logs.write("stdout", f"dropped {i}")
    logs.system("✔ Build succeeded")
    await logs.close("succeeded")

    lines = [line for b in await log_batches(js, build_id) for line in b.lines]
    assert [line.line for line in lines[:100]] == [f"{i:09d}" for i in range(100)]
    rest = [(line.stream, line.line) for line in lines[100:]]
    assert rest[0][0] == "system"
    assert rest[0][1].startswith("✂ Log limit of 1000 B reached")
    assert rest[1] == ("system", "✔ Build succeeded")
    assert rest[2][1].startswith("✂ 50 line(s)")
    assert len(rest) == 3
    assert [line.seq for line in lines] == list(range(1, 104))


async def test_redelivery_continues_after_the_stored_lines(js: JetStreamContext) -> None:
    """A second attempt starts its seq after the last line the first attempt stored."""
    build_id = str(uuid.uuid4())
    first = LogPublisher(js, build_id, attempt=1)
    for i in range(7):
        first.write("stdout", f"a{i}")
    await first.flush()
    await first.aclose()  # the worker died: no eof
    tail = await read_log_tail(js, build_id)
    assert (tail.last_seq, tail.finished) == (7, False)

    second = LogPublisher(js, build_id, attempt=2, first_seq=tail.last_seq + 1)
    second.write("stdout", "b0")
    await second.close("succeeded")
    batches = await log_batches(js, build_id)
    assert [line.seq for b in batches for line in b.lines] == list(range(1, 9))
    assert [b.attempt for b in batches][-1] == 2


async def test_long_lines_are_truncated(js: JetStreamContext) -> None:
    """One enormous line is cut to 16 KiB with a marker instead of breaking the batch."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(js, build_id, attempt=1)
    logs.write("stdout", "x" * 200_000)
    await logs.close("succeeded")
    (line,) = [line for b in await log_batches(js, build_id) for line in b.lines]
    assert line.line.endswith(" … [line truncated]")
    assert len(line.line) < 17_000


async def test_lines_past_the_buffer_are_dropped_counted_and_explained_in_order(
    restartable_nats: RestartableNats, own_nc: Client, own_js: JetStreamContext
) -> None:
    """NATS away, a buffer of 5 lines: 5 lines are held, the rest counted and dropped (no seq);
    once NATS is back one system line, numbered in turn, says how many and why, exactly where
    they are missing, and the log goes on after it without a hole in the numbering."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(
        own_js, build_id, attempt=1, buffer_lines=5, deadline=lambda: time.monotonic() + 60
    )
    for i in range(3):
        logs.write("stdout", f"before {i}")
    await logs.flush()
    await restartable_nats.astop()
    await eventually("the client sees the server gone", lambda: not own_nc.is_connected)
    for i in range(20):
        logs.write("stdout", f"during {i}")
    await asyncio.sleep(1.5)  # the outage itself (not a synchronisation): NATS stays away
    await restartable_nats.astart()
    await eventually("the gap is explained", lambda: _has_marker(own_js, build_id), timeout_s=20)
    logs.write("stdout", "after")
    await logs.close("succeeded")

    lines = await log_lines(own_js, build_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    text = [line.line for line in lines]
    assert text[:8] == [f"before {i}" for i in range(3)] + [f"during {i}" for i in range(5)]
    marker = lines[8]
    assert marker.stream == "system"
    assert re.fullmatch(
        r"✂ 15 lines were not recorded: the log stream was unavailable for \d+s "
        r"\(at most 5 unsent lines are kept\)",
        marker.line,
    ), marker.line
    assert text[9:] == ["after"]


async def _has_marker(js: JetStreamContext, build_id: str) -> bool:
    return any(line.line.startswith("✂") for line in await log_lines(js, build_id))


async def test_flush_and_close_fail_after_the_deadline_instead_of_waiting_forever(
    restartable_nats: RestartableNats, own_nc: Client, own_js: JetStreamContext
) -> None:
    """NATS stays away past the publisher's deadline: the sender gives up, and flush and close
    raise LogPublishError saying why — at once after the first — rather than waiting for an
    idle sender that never comes back (the hang of issue 6)."""
    build_id = str(uuid.uuid4())
    deadline = time.monotonic() + 4
    logs = LogPublisher(own_js, build_id, attempt=1, deadline=lambda: deadline)
    logs.write("stdout", "stored")
    await logs.flush()
    await restartable_nats.astop()
    await eventually("the client sees the server gone", lambda: not own_nc.is_connected)
    logs.write("stdout", "lost")
    with pytest.raises(LogPublishError, match=r"NATS was unavailable for \d+s"):
        await asyncio.wait_for(logs.flush(), 15)
    assert time.monotonic() >= deadline
    started = time.monotonic()
    with pytest.raises(LogPublishError):
        await asyncio.wait_for(logs.close("succeeded"), 5)
    assert time.monotonic() - started < 1


PRINTER = "import sys\nfor i in range(int(sys.argv[1])):\n    print(f'line {i} of a burst')\n"


async def test_a_burst_faster_than_nats_is_held_back_not_dropped(
    js: JetStreamContext, tmp_path: Path
) -> None:
    """A command printing 30,000 lines at once, with room for 1,000 unsent lines: the reader
    waits for the sender (`pace`) instead of dropping, so every line is stored, in order; under
    the backlog, batches grow past 100 lines."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(js, build_id, attempt=1, buffer_lines=1000)
    (tmp_path / "burst.py").write_text(PRINTER)
    await run_command(
        ["python3", "burst.py", "30000"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        sink=logs.write_output,
        timeout_s=120,
    )
    await logs.close("succeeded")

    batches = await log_batches(js, build_id)
    lines = [line for batch in batches for line in batch.lines]
    assert [line.line for line in lines] == [f"line {i} of a burst" for i in range(30_000)]
    assert [line.seq for line in lines] == list(range(1, 30_001))
    assert max(len(batch.lines) for batch in batches) > 100


async def test_with_nats_away_the_build_is_not_held_back(
    restartable_nats: RestartableNats, own_nc: Client, own_js: JetStreamContext, tmp_path: Path
) -> None:
    """NATS away: the reader stops waiting for it after `STALLED_SEND_S`, the command runs to
    its end, and what the buffer cannot hold is counted and explained once NATS is back."""
    build_id = str(uuid.uuid4())
    logs = LogPublisher(
        own_js, build_id, attempt=1, buffer_lines=5, deadline=lambda: time.monotonic() + 60
    )
    (tmp_path / "burst.py").write_text(PRINTER)
    logs.write("stdout", "before")
    await logs.flush()
    await restartable_nats.astop()
    await eventually("the client sees the server gone", lambda: not own_nc.is_connected)
    took = await run_command(
        ["python3", "burst.py", "200"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        sink=logs.write_output,
        timeout_s=60,
    )
    assert took < 10  # never held back until NATS returns
    await restartable_nats.astart()
    await logs.close("succeeded")

    text = [line.line for line in await log_lines(own_js, build_id)]
    assert text[:6] == ["before"] + [f"line {i} of a burst" for i in range(5)]
    assert re.fullmatch(r"✂ 195 lines were not recorded: .*", text[6]), text[6]
