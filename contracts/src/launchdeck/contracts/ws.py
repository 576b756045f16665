"""The WebSocket protocol of SPEC §4: client requests, server frames and channel names.

Client → server (multiplexed `/api/v1/ws` only):
  {"type": "subscribe", "channel": "build:<id>:logs", "from_seq": N, "batch": true | N}
  {"type": "subscribe", "channel": "project:<id or name>:events"}
  {"type": "subscribe", "channel": "project:<id or name>:logs", "tail": N, "from_cursor": C}
  {"type": "subscribe", "channel": "generation:<id>"}
  {"type": "subscribe", "channel": "run:<id>:logs", "from_seq": N}
  {"type": "unsubscribe", "channel": "..."}
Server → client:
  {"type": "log", "build_id", "seq", "ts", "stream", "line", "channel"?}
  {"type": "logs", "build_id", "lines": [{"seq", "ts", "stream", "line"}, ...], "channel"?}
  {"type": "app_log", "project_id", "deployment_id", "process", "seq", "ts", "stream", "line",
   "cursor", "channel"?}
  {"type": "end", "build_id", "status", "channel"?}
  {"type": "run_log", "run_id", "seq", "ts", "stream", "line", "channel"}
  {"type": "run_end", "run_id", "status", "channel"}
  {"type": "event", "channel", "kind", "event": {...}}
  {"type": "subscribed" | "unsubscribed", "channel"}
  {"type": "error", "message", "channel"?}
`channel` is left out on the single-build endpoint, where there is only one.

`logs` (batched) frames are opt-in (`"batch"` in the subscribe message, `?batch=` on the
single-build endpoint): a viewer that asked for them gets every build log line in one, carrying
the lines already waiting for its socket (one line when it keeps up, more when it is behind; a
line is never held back to fill a frame). Without it every line is its own `log` frame.

The control-api encodes with these types and the CLI decodes with them (`decode_frame`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from launchdeck.contracts.api import NO_CONTROL
from launchdeck.contracts.messages import LogStream
from launchdeck.contracts.statuses import BuildStatus, RunStatus

# --- client requests --------------------------------------------------------------------------


# A channel name as a client sends it: short, and no control characters (see `api.NO_CONTROL`).
ChannelName = Annotated[str, msgspec.Meta(max_length=300, pattern=NO_CONTROL)]
# A log line number: JetStream and PostgreSQL count them in signed 64 bits.
LogSeq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


# How many recent lines of a running app a viewer gets before the live ones.
AppLogTail = Annotated[int, msgspec.Meta(ge=0, le=10_000)]

# Batched log frames: at most this many lines in one `logs` frame (`true`: the default).
MAX_BATCH_LINES = 10_000
DEFAULT_BATCH_LINES = 1_000
# `false`/0: one `log` frame per line; `true`/1: `logs` frames of up to DEFAULT_BATCH_LINES;
# N >= 2: up to N lines per frame.
BatchOption = bool | Annotated[int, msgspec.Meta(ge=0, le=MAX_BATCH_LINES)]


def batch_limit(option: BatchOption) -> int:
    """Lines per frame a `batch` option asks for: 0 for single-line `log` frames."""
    if option is True or option == 1:
        return DEFAULT_BATCH_LINES
    if option is False:
        return 0
    return int(option)


class Subscribe(msgspec.Struct, tag_field="type", tag="subscribe", frozen=True, kw_only=True):
    """`from_seq`: a build log's first line. For `project:<id>:logs` (a running app's lines):
    `tail` recent lines first (default 100; 0: only new ones), or everything from `from_cursor`
    (an `app_log` frame's `cursor`: how a viewer cut off as too slow resumes). `batch` (build
    logs): `logs` frames instead of one `log` frame per line (see the module docstring)."""

    channel: ChannelName
    from_seq: LogSeq = 1
    batch: BatchOption = False
    tail: AppLogTail | None = None
    from_cursor: LogSeq | None = None


class Unsubscribe(msgspec.Struct, tag_field="type", tag="unsubscribe", frozen=True, kw_only=True):
    channel: ChannelName


ClientMessage = Subscribe | Unsubscribe


# --- server frames ------------------------------------------------------------------------------

EventKind = Literal["build", "deployment", "generation", "run"]


class _Frame(msgspec.Struct, tag_field="type", frozen=True, kw_only=True, omit_defaults=True):
    pass


class LogFrame(_Frame, tag="log", frozen=True, kw_only=True, omit_defaults=True):
    build_id: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str
    channel: str | None = None


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a `logs` frame: a `log` frame's fields without the build."""

    seq: int
    ts: datetime
    stream: LogStream
    line: str


class LogsFrame(_Frame, tag="logs", frozen=True, kw_only=True, omit_defaults=True):
    """Consecutive lines of a build's log (seq ascending, none skipped), for a viewer that
    opted into batches; never empty."""

    build_id: str
    lines: list[LogEntry]
    channel: str | None = None


class AppLogFrame(_Frame, tag="app_log", frozen=True, kw_only=True, omit_defaults=True):
    """One line of a running app (`AppLogBatch` on `ld.logs.app.<project>`): `seq` counts per
    deployment and process, `cursor` is the LOGS stream sequence of its batch (resume there
    and drop the (deployment, process, seq) already seen)."""

    project_id: str
    deployment_id: str
    process: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str
    cursor: int
    channel: str | None = None


class EndFrame(_Frame, tag="end", frozen=True, kw_only=True, omit_defaults=True):
    """The log is complete; `status` is always present on the wire, null when unknown."""

    build_id: str
    status: BuildStatus | None
    channel: str | None = None


class RunLogFrame(_Frame, tag="run_log", frozen=True, kw_only=True, omit_defaults=True):
    """One line of a run's log (`run:<id>:logs`); `seq` per run, from 1, never repeated."""

    run_id: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str
    channel: str | None = None


class RunEndFrame(_Frame, tag="run_end", frozen=True, kw_only=True, omit_defaults=True):
    """The run's log is complete; `status` its final status (null when unknown)."""

    run_id: str
    status: RunStatus | None
    channel: str | None = None


class EventFrame(_Frame, tag="event", frozen=True, kw_only=True, omit_defaults=True):
    channel: str
    kind: EventKind
    # The event as it was published: fields newer than the server reach the client too.
    event: msgspec.Raw


class SubscribedFrame(_Frame, tag="subscribed", frozen=True, kw_only=True, omit_defaults=True):
    channel: str


class UnsubscribedFrame(_Frame, tag="unsubscribed", frozen=True, kw_only=True, omit_defaults=True):
    channel: str


class ErrorFrame(_Frame, tag="error", frozen=True, kw_only=True, omit_defaults=True):
    message: str
    channel: str | None = None


Frame = (
    LogFrame
    | LogsFrame
    | AppLogFrame
    | EndFrame
    | RunLogFrame
    | RunEndFrame
    | EventFrame
    | SubscribedFrame
    | UnsubscribedFrame
    | ErrorFrame
)

_frame_encoder = msgspec.json.Encoder()
_frame_decoder = msgspec.json.Decoder(Frame)
_client_decoder = msgspec.json.Decoder(ClientMessage)


def encode_frame(frame: Frame) -> bytes:
    return _frame_encoder.encode(frame)


def decode_frame(data: str | bytes) -> Frame:
    """A server frame; raises msgspec.DecodeError / ValidationError for anything else."""
    frame: Frame = _frame_decoder.decode(data)
    return frame


def decode_client_message(data: str | bytes) -> ClientMessage:
    """A client request; raises msgspec.DecodeError / ValidationError for anything else."""
    message: ClientMessage = _client_decoder.decode(data)
    return message


# --- channel names --------------------------------------------------------------------------------


def build_logs_channel(build_id: str) -> str:
    return f"build:{build_id}:logs"


def project_events_channel(project: str) -> str:
    return f"project:{project}:events"


def project_logs_channel(project: str) -> str:
    """A running app's log lines (`AppLogFrame`), recent then live."""
    return f"project:{project}:logs"


def generation_channel(job_id: str) -> str:
    return f"generation:{job_id}"


def run_logs_channel(run_id: str) -> str:
    """A run's log lines (`RunLogFrame`), from `from_seq`, then `RunEndFrame`."""
    return f"run:{run_id}:logs"
