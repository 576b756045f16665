"""Reading back what a build published: its LOGS batches and its EVENTS."""

from __future__ import annotations

from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import BuildStatusChanged, LogBatch, LogLine
from launchdeck.contracts.subjects import (
    STREAM_EVENTS,
    STREAM_LOGS,
    build_event_subject,
    build_log_subject,
)

T = TypeVar("T")


async def read_subject(js: JetStreamContext, stream: str, subject: str, type_: type[T]) -> list[T]:
    """Every message stored on `subject`, oldest first (the stream is read to its current end)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    if not (info.state.subjects or {}).get(subject):
        return []
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    out: list[T] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            out.append(decode(msg.data, type_))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await sub.unsubscribe()


async def log_batches(js: JetStreamContext, build_id: str) -> list[LogBatch]:
    return await read_subject(js, STREAM_LOGS, build_log_subject(build_id), LogBatch)


async def log_lines(js: JetStreamContext, build_id: str) -> list[LogLine]:
    return [line for batch in await log_batches(js, build_id) for line in batch.lines]


async def build_events(
    js: JetStreamContext, project_id: str, build_id: str
) -> list[BuildStatusChanged]:
    return await read_subject(
        js, STREAM_EVENTS, build_event_subject(project_id, build_id), BuildStatusChanged
    )
