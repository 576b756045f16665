"""The WebSocket protocol of SPEC §4: client requests, server frames and channel names.

Client → server (multiplexed `/api/v1/ws` only):
  {"type": "subscribe", "channel": "build:<id>:logs", "from_seq": N}
  {"type": "subscribe", "channel": "project:<id or name>:events"}
  {"type": "subscribe", "channel": "generation:<id>"}
  {"type": "unsubscribe", "channel": "..."}
Server → client:
  {"type": "log", "build_id", "seq", "ts", "stream", "line", "channel"?}
  {"type": "end", "status", "channel"?}
  {"type": "event", "channel", "kind", "event": {...}}
  {"type": "subscribed" | "unsubscribed", "channel"}
  {"type": "error", "message", "channel"?}
`channel` is left out on the single-build endpoint, where there is only one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from launchdeck.contracts.messages import BuildStatus, LogStream

# --- client requests --------------------------------------------------------------------------


class Subscribe(msgspec.Struct, tag_field="type", tag="subscribe", frozen=True, kw_only=True):
    channel: str
    from_seq: Annotated[int, msgspec.Meta(ge=1)] = 1


class Unsubscribe(msgspec.Struct, tag_field="type", tag="unsubscribe", frozen=True, kw_only=True):
    channel: str


ClientMessage = Subscribe | Unsubscribe

_client_decoder = msgspec.json.Decoder(ClientMessage)


class BadRequest(Exception):
    """A client message the server cannot act on; the text goes back as an error frame."""


def decode_client_message(data: str | bytes) -> ClientMessage:
    try:
        message: ClientMessage = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    return message


# --- server frames ------------------------------------------------------------------------------


EventKind = Literal["build", "deployment", "generation"]


class _Frame(msgspec.Struct, tag_field="type", frozen=True, kw_only=True, omit_defaults=True):
    pass


class LogFrame(_Frame, tag="log", frozen=True, kw_only=True, omit_defaults=True):
    build_id: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str
    channel: str | None = None


class EndFrame(_Frame, tag="end", frozen=True, kw_only=True, omit_defaults=True):
    # Always present on the wire, even when unknown (null).
    status: BuildStatus | None
    channel: str | None = None


class EventFrame(_Frame, tag="event", frozen=True, kw_only=True, omit_defaults=True):
    channel: str
    kind: EventKind
    event: msgspec.Raw


class SubscribedFrame(_Frame, tag="subscribed", frozen=True, kw_only=True, omit_defaults=True):
    channel: str


class UnsubscribedFrame(_Frame, tag="unsubscribed", frozen=True, kw_only=True, omit_defaults=True):
    channel: str


class ErrorFrame(_Frame, tag="error", frozen=True, kw_only=True, omit_defaults=True):
    message: str
    channel: str | None = None


Frame = LogFrame | EndFrame | EventFrame | SubscribedFrame | UnsubscribedFrame | ErrorFrame

_frame_encoder = msgspec.json.Encoder()


def encode_frame(frame: Frame) -> bytes:
    return _frame_encoder.encode(frame)


# --- channels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildLogsChannel:
    build_id: str


@dataclass(frozen=True)
class ProjectEventsChannel:
    project: str  # an id or a name, resolved against the projects table


@dataclass(frozen=True)
class GenerationChannel:
    job_id: str


Channel = BuildLogsChannel | ProjectEventsChannel | GenerationChannel

_BUILD_LOGS = re.compile(r"build:(?P<id>[^:]+):logs")
_PROJECT_EVENTS = re.compile(r"project:(?P<id>[^:]+):events")
_GENERATION = re.compile(r"generation:(?P<id>[^:]+)")


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{what} must be a UUID, got {value!r}") from None


def parse_channel(name: str) -> Channel:
    if match := _BUILD_LOGS.fullmatch(name):
        return BuildLogsChannel(_uuid(match["id"], "a build id"))
    if match := _PROJECT_EVENTS.fullmatch(name):
        return ProjectEventsChannel(match["id"])
    if match := _GENERATION.fullmatch(name):
        return GenerationChannel(_uuid(match["id"], "a generation id"))
    raise BadRequest(
        f"unknown channel {name!r}: expected build:<id>:logs, project:<id>:events "
        "or generation:<id>"
    )
