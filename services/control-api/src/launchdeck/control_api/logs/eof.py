"""Ending a build's log on the worker's behalf, when the build finished without its eof batch.

Live viewers follow the LOGS stream until an eof batch (`logstream`), so a build the control-api
declares finished itself (the worker died for good) must get one, or they would wait forever.
The batch carries the final status and no lines — or one system line saying why the log ends
there (a build cancelled while queued: `■ Cancelled before it started`), numbered after the last
line stored. It is published only if the log does not already end with an eof, and only right
after the batch that was the subject's last when we looked
(`Nats-Expected-Last-Subject-Sequence`): a worker's late batch is never cut off by ours.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import LogBatch, LogLine
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import STREAM_LOGS, build_log_subject
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check.
WRONG_LAST_SEQUENCE = 10071
_ATTEMPTS = 3

_batch_decoder = msgspec.json.Decoder(LogBatch)


async def _last_batch(js: JetStreamContext, subject: str) -> tuple[int, LogBatch | None]:
    """(stream sequence, batch) of the subject's newest message; (0, None) when there is none."""
    try:
        msg = await js.get_last_msg(STREAM_LOGS, subject)
    except NotFoundError:
        return 0, None
    try:
        return msg.seq or 0, _batch_decoder.decode(msg.data or b"")
    except msgspec.DecodeError:
        return msg.seq or 0, None


async def ensure_log_eof(
    js: JetStreamContext,
    build_id: str,
    status: BuildStatus,
    *,
    attempt: int = 1,
    line: str | None = None,
) -> bool:
    """Publish the eof batch of `build_id`'s log with `status` (and `line`, a last system line),
    unless it already ended.

    Returns True when this call published it. Safe to call from several replicas at once: the
    batch has a fixed `Nats-Msg-Id`, and the sequence check rejects a second eof written after
    another one.
    """
    subject = build_log_subject(build_id)
    for _ in range(_ATTEMPTS):
        last_seq, last = await _last_batch(js, subject)
        if last is not None and last.eof:
            return False
        lines: list[LogLine] = []
        if line is not None:
            after = last.lines[-1].seq if last is not None and last.lines else 0
            lines.append(LogLine(seq=after + 1, ts=datetime.now(UTC), stream="system", line=line))
        batch = LogBatch(build_id=build_id, attempt=attempt, lines=lines, eof=True, status=status)
        headers = {
            "Nats-Msg-Id": f"{build_id}:eof",
            "Nats-Expected-Last-Subject-Sequence": str(last_seq),
        }
        try:
            ack = await js.publish(subject, encode(batch), headers=headers)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                continue  # something landed meanwhile: look again
            raise
        if ack.duplicate:
            return False
        log.info("build_log_ended_for_worker", build_id=build_id, status=status)
        return True
    log.warning("build_log_eof_not_published", build_id=build_id, reason="log kept changing")
    return False
