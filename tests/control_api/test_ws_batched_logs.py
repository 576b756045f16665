"""Batched log frames (opt-in: `?batch=` on the single-build socket, `"batch"` in a subscribe
message): every line once, in order, across frames; `from_seq` resumes; `end` comes last; a
frame never holds more lines than asked; single-line frames stay the default."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import WSCloseCode
from nats.js import JetStreamContext

from launchdeck.contracts.messages import LogLine
from launchdeck.contracts.ws import (
    DEFAULT_BATCH_LINES,
    EndFrame,
    LogFrame,
    LogsFrame,
    Subscribe,
    batch_limit,
    decode_client_message,
    decode_frame,
    encode_frame,
)
from launchdeck.control_api.ws.framing import LogFraming
from tests.control_api.log_support import (
    ADMIN,
    AUTH,
    LogPublisher,
    Viewed,
    create_build,
    receive_frame,
    view_until_closed,
)
from tests.control_api.support import Api


def ws_path(build_id: str, query: str = "") -> str:
    return f"/api/v1/builds/{build_id}/logs/ws{query}"


def batched_seqs(viewed: Viewed) -> list[int]:
    """The seqs of every line of every `logs` frame, in arrival order."""
    return [line["seq"] for f in viewed.frames if f["type"] == "logs" for line in f["lines"]]


def batch_sizes(viewed: Viewed) -> list[int]:
    return [len(f["lines"]) for f in viewed.frames if f["type"] == "logs"]


def test_spliced_frames_are_the_contract_encoding() -> None:
    """A spliced `log` frame and a joined `logs` frame are byte for byte the Structs' encoding."""
    lines = [
        LogLine(seq=7, ts=datetime.now(UTC), stream="stderr", line='quote " and \\ and é'),
        LogLine(seq=8, ts=datetime.now(UTC), stream="system", line=""),
    ]
    for channel in [None, 'build:x:"logs"']:
        single = LogFraming("b-1", channel, 0)
        assert single.batcher is None
        expected = [
            encode_frame(
                LogFrame(
                    build_id="b-1",
                    seq=x.seq,
                    ts=x.ts,
                    stream=x.stream,
                    line=x.line,
                    channel=channel,
                )
            )
            for x in lines
        ]
        assert single.items(lines) == expected
        batched = LogFraming("b-1", channel, 10)
        assert batched.batcher is not None
        joined = batched.batcher.prefix + b",".join(batched.items(lines)) + batched.batcher.suffix
        frame = decode_frame(joined)
        assert isinstance(frame, LogsFrame)
        assert [x.seq for x in frame.lines] == [7, 8]
        assert frame.channel == channel
        assert msgspec.json.decode(joined) == msgspec.json.decode(
            encode_frame(LogsFrame(build_id="b-1", lines=frame.lines, channel=channel))
        )


def test_batch_option_reads_true_numbers_and_false() -> None:
    """`true`/1 → the default size, N → N, false/0 → single lines; out of range is invalid."""
    assert batch_limit(True) == batch_limit(1) == DEFAULT_BATCH_LINES
    assert batch_limit(False) == batch_limit(0) == 0
    assert batch_limit(25) == 25
    message = decode_client_message('{"type":"subscribe","channel":"c","batch":true}')
    assert isinstance(message, Subscribe)
    assert message.batch is True
    assert decode_client_message('{"type":"subscribe","channel":"c"}') == Subscribe(channel="c")
    for bad in ["-1", "10001", '"yes"']:
        try:
            decode_client_message(f'{{"type":"subscribe","channel":"c","batch":{bad}}}')
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"batch={bad} was accepted")


async def test_batched_viewers_get_every_line_once_in_order(api: Api, js: JetStreamContext) -> None:
    """Viewers before and after the build (worker restart repeating lines included) get 1..N in
    `logs` frames only, then `end` last and a normal close; a caught-up replay is batched."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    before = await api.client.ws_connect(ws_path(build_id, f"?token={ADMIN}&batch=1"))
    await worker.lines(150, per_batch=40)
    await worker.restart(replay_from=121)  # attempt 2 repeats 121..150
    await worker.lines(230, per_batch=64)
    await worker.finish("succeeded", lines=4)
    after = await api.client.ws_connect(ws_path(build_id, "?batch=true"), headers=AUTH)
    capped = await api.client.ws_connect(ws_path(build_id, "?batch=7"), headers=AUTH)

    expected = list(range(1, worker.published + 1))
    for ws in [before, after, capped]:
        viewed = await view_until_closed(ws)
        assert {f["type"] for f in viewed.frames} == {"logs", "end"}
        assert batched_seqs(viewed) == expected
        assert viewed.frames[-1] == {"type": "end", "build_id": build_id, "status": "succeeded"}
        assert viewed.close_code == WSCloseCode.OK
        for frame in viewed.frames[:-1]:  # each one is the contract's LogsFrame
            decoded = decode_frame(json.dumps(frame))
            assert isinstance(decoded, LogsFrame)
            assert decoded.build_id == build_id
            assert decoded.lines
            assert "channel" not in frame
    # Replayed history is queued a NATS batch at a time, so those frames carry many lines.
    assert max(batch_sizes(await _replay(api, build_id, "?batch=true"))) > 1
    assert max(batch_sizes(await _replay(api, build_id, "?batch=7"))) <= 7
    first = (await _replay(api, build_id, "?batch=2")).frames[0]["lines"][0]
    assert set(first) == {"seq", "ts", "stream", "line"}
    assert first["line"] == "line 1"
    assert first["ts"].endswith("Z")


async def _replay(api: Api, build_id: str, query: str) -> Viewed:
    return await view_until_closed(
        await api.client.ws_connect(ws_path(build_id, query), headers=AUTH)
    )


async def test_batched_from_seq_resumes_after_the_last_line_seen(
    api: Api, js: JetStreamContext
) -> None:
    """`?from_seq=N&batch=N` sends N..end only, batched, with nothing before N in any frame."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(90, per_batch=25)
    await worker.finish("failed")
    viewed = await _replay(api, build_id, "?from_seq=61&batch=5")
    assert batched_seqs(viewed) == list(range(61, 91))
    assert max(batch_sizes(viewed)) <= 5
    assert viewed.ends == [{"type": "end", "build_id": build_id, "status": "failed"}]
    assert viewed.frames[-1]["type"] == "end"


async def test_unbatched_stays_the_default(api: Api, js: JetStreamContext) -> None:
    """Without `batch` (or with `batch=0`/`false`) every line is its own `log` frame."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(20, per_batch=20)
    await worker.finish("succeeded")
    for query in ["", "?batch=0", "?batch=false"]:
        viewed = await _replay(api, build_id, query)
        assert viewed.seqs == list(range(1, 21))
        assert {f["type"] for f in viewed.frames} == {"log", "end"}


async def test_bad_batch_values_are_problems_before_the_upgrade(api: Api) -> None:
    """`?batch=` that is not a boolean or 0..10000 → 422 problem+json naming `batch`."""
    build_id = await create_build(api)
    for query in ["?batch=abc", "?batch=-1", "?batch=10001"]:
        reply = await api.call("GET", ws_path(build_id, query))
        assert reply.status == 422, (query, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        assert "batch" in json.dumps(reply.body)


async def test_mux_channels_batch_by_subscription(api: Api, js: JetStreamContext) -> None:
    """A subscription with `"batch": N` gets history and live lines 1..N in `logs` frames of at
    most N lines with its channel, then its `end` last; a bad `batch` is an error frame."""
    build_id = await create_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(120, per_batch=30)
    ws = await api.client.ws_connect("/api/v1/ws", headers=AUTH)
    batched = f"build:{build_id}:logs"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": batched, "batch": 16}))
    assert await receive_frame(ws) == {"type": "subscribed", "channel": batched}
    await worker.lines(80, per_batch=30)
    await worker.finish("succeeded")

    frames: list[dict[str, Any]] = []
    while not any(f["type"] == "end" for f in frames):
        frames.append(await receive_frame(ws))
    lines = [x["seq"] for f in frames if f["type"] == "logs" for x in f["lines"]]
    assert lines == list(range(1, 201))
    assert all(f["channel"] == batched for f in frames)
    assert all(len(f["lines"]) <= 16 for f in frames if f["type"] == "logs")
    assert frames[-1] == {
        "type": "end",
        "build_id": build_id,
        "status": "succeeded",
        "channel": batched,
    }
    decoded = [decode_frame(json.dumps(f)) for f in frames]
    assert isinstance(decoded[-1], EndFrame)
    await ws.send_str(json.dumps({"type": "subscribe", "channel": batched, "batch": -3}))
    error = await receive_frame(ws)
    assert error["type"] == "error"
    assert "batch" in error["message"]
    await ws.close()


async def test_unknown_build_on_batched_subscription_is_an_error(api: Api) -> None:
    """A batched subscription to a build that does not exist is an error frame, as unbatched."""
    ws = await api.client.ws_connect("/api/v1/ws", headers=AUTH)
    channel = f"build:{uuid.uuid4()}:logs"
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel, "batch": True}))
    frame = await receive_frame(ws)
    assert frame["type"] == "error"
    assert frame["channel"] == channel
    await ws.close()
