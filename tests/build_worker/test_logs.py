"""The build log publisher: seq numbering, batching, masking, the size cap and the final batch."""

from __future__ import annotations

import uuid

from nats.js import JetStreamContext

from launchdeck.build_worker.logs import LogPublisher, make_masker, read_log_tail
from tests.build_worker.streams import log_batches


def test_masker_replaces_every_secret_value() -> None:
    """Each secret value (longest first, overlapping ones too) becomes *** wherever it appears."""
    mask = make_masker(["hunter2", "hunter2-long", "ab", ""])
    assert mask is not None
    assert mask("pw=hunter2 and hunter2-long; ab stays") == "pw=*** and ***; ab stays"
    assert make_masker([]) is None
    assert make_masker(["x"]) is None  # too short to mask without shredding every line


async def test_lines_are_numbered_batched_and_end_with_eof(js: JetStreamContext) -> None:
    """Seq runs 1..N across batches of at most 100 lines; the last batch has eof and status."""
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
    assert all(len(batch.lines) <= 100 for batch in batches)
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
