"""The WebSocket protocol codec: frames as the documented JSON, both ways, and client messages
read strictly (what the server answers with an error frame)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from launchdeck.contracts.ws import (
    EndFrame,
    ErrorFrame,
    EventFrame,
    LogFrame,
    Subscribe,
    SubscribedFrame,
    Unsubscribe,
    build_logs_channel,
    decode_client_message,
    decode_frame,
    encode_frame,
    generation_channel,
    project_events_channel,
)
from launchdeck.control_api.ws.protocol import (
    BadRequest,
    BuildLogsChannel,
    GenerationChannel,
    ProjectEventsChannel,
    parse_channel,
)
from launchdeck.control_api.ws.protocol import decode_client_message as server_decode

BUILD = "0b6f3b8e-8d4a-4a43-9b0f-6f3c1f1d2e3a"
TS = datetime(2026, 11, 29, 12, 0, 1, 500000, tzinfo=UTC)


def test_log_and_end_frames_are_the_documented_json() -> None:
    log = LogFrame(build_id=BUILD, seq=7, ts=TS, stream="stderr", line="npm WARN x")
    assert json.loads(encode_frame(log)) == {
        "type": "log",
        "build_id": BUILD,
        "seq": 7,
        "ts": "2026-11-29T12:00:01.500000Z",
        "stream": "stderr",
        "line": "npm WARN x",
    }
    end = EndFrame(build_id=BUILD, status=None)
    assert json.loads(encode_frame(end)) == {"type": "end", "build_id": BUILD, "status": None}
    channel = build_logs_channel(BUILD)
    with_channel = EndFrame(build_id=BUILD, status="failed", channel=channel)
    assert json.loads(encode_frame(with_channel))["channel"] == f"build:{BUILD}:logs"


@pytest.mark.parametrize(
    "frame",
    [
        LogFrame(build_id=BUILD, seq=1, ts=TS, stream="system", line="▶ Cloning", channel="c"),
        EndFrame(build_id=BUILD, status="succeeded"),
        SubscribedFrame(channel="project:web:events"),
        ErrorFrame(message="no build"),
    ],
)
def test_frames_round_trip(frame: object) -> None:
    assert decode_frame(encode_frame(frame)) == frame  # type: ignore[arg-type]


def test_event_frames_carry_the_event_as_published() -> None:
    """Fields the server does not know (a newer publisher's) reach the client untouched."""
    raw = b'{"status":"active","future_field":[1,2]}'
    frame = EventFrame(channel="project:web:events", kind="deployment", event=msgspec.Raw(raw))
    decoded = decode_frame(encode_frame(frame))
    assert isinstance(decoded, EventFrame)
    assert json.loads(bytes(decoded.event)) == {"status": "active", "future_field": [1, 2]}


def test_client_messages() -> None:
    assert decode_client_message('{"type": "unsubscribe", "channel": "x"}') == Unsubscribe(
        channel="x"
    )
    subscribe = decode_client_message(f'{{"type": "subscribe", "channel": "build:{BUILD}:logs"}}')
    assert subscribe == Subscribe(channel=f"build:{BUILD}:logs", from_seq=1)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        (
            '{"type": "subscribe", "channel": "x", "from_seq": 0}',
            "invalid message: Expected `int` >= 1",
        ),
        ('{"type": "publish", "channel": "x"}', "invalid message: Invalid value 'publish'"),
        ('{"channel": "x"}', "invalid message: Object missing required field `type`"),
        ("{not json", "malformed JSON"),
    ],
)
def test_bad_client_messages_are_bad_requests_saying_why(text: str, start: str) -> None:
    with pytest.raises(BadRequest) as caught:
        server_decode(text)
    assert str(caught.value).startswith(start)


def test_channel_names_parse_to_what_they_name() -> None:
    assert parse_channel(build_logs_channel(BUILD)) == BuildLogsChannel(BUILD)
    assert parse_channel(build_logs_channel(BUILD.upper())) == BuildLogsChannel(BUILD)
    assert parse_channel(project_events_channel("web")) == ProjectEventsChannel("web")
    assert parse_channel(generation_channel(BUILD)) == GenerationChannel(BUILD)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("build:42:logs", "a build id must be a UUID, got '42'"),
        ("generation:nope", "a generation id must be a UUID, got 'nope'"),
        ("project:a:b:events", "unknown channel"),
        ("logs", "unknown channel"),
    ],
)
def test_bad_channels_say_why(name: str, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_channel(name)
    assert str(caught.value).startswith(reason)
