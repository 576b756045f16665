"""What a WebSocket carries: a build's log or a running app's pumped into an outbox, and the
channels of the multiplexed socket (`build:<id>:logs`, `project:<id>:events`,
`project:<id>:logs`, `generation:<id>`, `run:<id>:logs`).

Every log subscription has its own ordered consumer (`logstream`), so it never waits for other
viewers; events come from core NATS subscriptions whose callbacks only `offer` frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime

import asyncpg
import msgspec
import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import (
    BuildStatusChanged,
    DeploymentStatusChanged,
    RunStatusChanged,
)
from launchdeck.contracts.subjects import (
    SUBJECT_BUILD_EVENTS_PREFIX,
    SUBJECT_RUN_EVENTS_PREFIX,
    generation_event_subject,
    project_events_filter,
)
from launchdeck.contracts.ws import (
    AppLogFrame,
    EndFrame,
    ErrorFrame,
    EventFrame,
    EventKind,
    RunEndFrame,
    RunLogFrame,
    Subscribe,
    SubscribedFrame,
    Unsubscribe,
    UnsubscribedFrame,
    batch_limit,
    encode_frame,
)
from launchdeck.control_api.api.auth import recheck, require_scope
from launchdeck.control_api.api.builds import load_build
from launchdeck.control_api.api.generations import load_generation
from launchdeck.control_api.api.keys import JS, NC, POOL
from launchdeck.control_api.api.runs import load_run
from launchdeck.control_api.domain.errors import DomainError
from launchdeck.control_api.domain.generations import progress_of
from launchdeck.control_api.domain.projects import resolve_project
from launchdeck.control_api.logs.app import AppLogLine, AppLogQuery, iter_app_log
from launchdeck.control_api.logs.live import LiveLogs
from launchdeck.control_api.logs.run_log import RunLogChunk, run_log_chunks
from launchdeck.control_api.logs.source import build_log_chunks
from launchdeck.control_api.logs.stream import LogChunk
from launchdeck.control_api.store.records import Build
from launchdeck.control_api.ws.connection import Outbox, cancel_task
from launchdeck.control_api.ws.framing import LogFraming
from launchdeck.control_api.ws.protocol import (
    BadRequest,
    BuildLogsChannel,
    GenerationChannel,
    ProjectEventsChannel,
    ProjectLogsChannel,
    RunLogsChannel,
    decode_client_message,
    parse_channel,
)
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# The shared readers of running builds' logs (`logs.live`), for both WebSocket endpoints.
LIVE_LOGS = web.AppKey("live_logs", LiveLogs)

# Recent lines a viewer of a running app's log gets first, unless it says otherwise.
DEFAULT_APP_LOG_TAIL = 100

# --- a build's log into an outbox ------------------------------------------------------------


async def pump_build_log(
    app: web.Application,
    outbox: Outbox,
    build: Build,
    *,
    from_seq: int,
    channel: str | None,
    batch: int,
) -> bool:
    """The build's log from `from_seq` into `outbox` (`pump_log`); lines of a running build
    that come while this viewer keeps up are pushed by the build's shared feed (`logs.live`).

    `batch` > 0: the lines go out in `logs` frames of up to that many lines (`framing`)."""
    framing = LogFraming(str(build.id), channel, batch)

    def push(chunk: LogChunk) -> bool:
        items = framing.chunk_items(chunk)
        # Only while well within the limit; past it, the pump's own pacing takes over.
        if outbox.backlog + len(items) > max(1, outbox.limit // 2):
            return False
        return outbox.offer_lines(framing.batcher, items)

    chunks = build_log_chunks(
        app[POOL], app[JS], build, from_seq=from_seq, follow=True, live=app[LIVE_LOGS], push=push
    )
    return await pump_log(outbox, chunks, framing)


async def pump_log(
    outbox: Outbox, chunks: AsyncGenerator[LogChunk, None], framing: LogFraming
) -> bool:
    """Offer every line then the end frame; False when the outbox closed first (too slow)."""
    build_id, channel = framing.build_id, framing.channel
    async with aclosing(chunks):
        async for chunk in chunks:
            # This viewer's own consumer can wait: `put_lines` pauses rather than overflow a
            # reader that is only a little behind (one that takes nothing is closed with 1013).
            if chunk.lines and not await outbox.put_lines(
                framing.batcher, framing.chunk_items(chunk)
            ):
                return False
            if chunk.end is not None:
                end = EndFrame(build_id=build_id, status=chunk.end.status, channel=channel)
                return outbox.offer(encode_frame(end))
            # No yield to the loop between chunks that are already there (a viewer behind the
            # shared feed, an archive): they queue together and go out in one batched frame,
            # so a loaded server sends fewer, larger frames. `put_lines` yields at half the
            # limit, which keeps a long replay from holding the loop.
    return True


async def pump_app_log(
    outbox: Outbox, batches: AsyncGenerator[list[AppLogLine], None], channel: str | None
) -> bool:
    """Offer every app log line as it comes (the reader follows for ever); False when the outbox
    closed (the viewer left, or was too slow: it resumes with `from_cursor`)."""
    async with aclosing(batches):
        async for batch in batches:
            for entry in batch:
                line = entry.line
                frame = AppLogFrame(
                    project_id=entry.project_id,
                    deployment_id=entry.deployment_id,
                    process=entry.process,
                    seq=line.seq,
                    ts=line.ts,
                    stream=line.stream,
                    line=line.line,
                    cursor=entry.cursor,
                    channel=channel,
                )
                if not outbox.offer(encode_frame(frame)):
                    return False
                if outbox.backlog >= outbox.limit // 2 and not await outbox.wait_for_room():
                    return False
            await asyncio.sleep(0)
    return True


async def pump_run_log(
    outbox: Outbox, chunks: AsyncGenerator[RunLogChunk, None], run_id: str, channel: str
) -> bool:
    """Offer every line of a run's log, then its end; False when the outbox closed first."""
    async with aclosing(chunks):
        async for chunk in chunks:
            frames = [
                encode_frame(
                    RunLogFrame(
                        run_id=run_id,
                        seq=line.seq,
                        ts=line.ts,
                        stream=line.stream,
                        line=line.line,
                        channel=channel,
                    )
                )
                for line in chunk.lines
            ]
            if frames and not await outbox.put_lines(None, frames):
                return False
            if chunk.ended:
                end = RunEndFrame(run_id=run_id, status=chunk.status, channel=channel)
                return outbox.offer(encode_frame(end))
            await asyncio.sleep(0)
    return True


# --- the multiplexed socket ---------------------------------------------------------------------


class _Subscription:
    """What one channel holds open: a pump task and/or core NATS subscriptions."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.nats: list[Subscription] = []
        # Run once the `subscribed` frame is queued (a channel's first frames after it).
        self.after: Callable[[], None] | None = None

    async def close(self) -> None:
        if self.task is not None:
            await cancel_task(self.task)
        for sub in self.nats:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


class MuxSession:
    """The channels of one multiplexed socket, driven by the client's text messages."""

    def __init__(self, request: web.Request, outbox: Outbox) -> None:
        self._request = request
        self._app = request.app
        self._outbox = outbox
        self._channels: dict[str, _Subscription] = {}

    async def on_text(self, text: str) -> None:
        """Act on one client message; whatever goes wrong is an error frame, never a close."""
        try:
            message = decode_client_message(text)
            match message:
                case Subscribe():
                    await self._subscribe(message)
                case Unsubscribe():
                    await self._unsubscribe(message.channel)
        except BadRequest as exc:
            self._send(ErrorFrame(message=str(exc), channel=_channel_of(text)))
        except DomainError as exc:  # not found, or not this token's project
            self._send(ErrorFrame(message=exc.detail, channel=_channel_of(text)))
        except Exception:
            log.exception("ws_request_failed")
            self._send(ErrorFrame(message="internal error, try again", channel=_channel_of(text)))

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        for sub in channels:
            await sub.close()

    def _send(self, frame: ErrorFrame | SubscribedFrame | UnsubscribedFrame) -> None:
        self._outbox.offer(encode_frame(frame))

    async def _subscribe(self, request: Subscribe) -> None:
        name = request.channel
        channel = parse_channel(name)
        if name in self._channels:
            raise BadRequest(f"already subscribed to {name!r}")
        await recheck(self._request)  # a token revoked since the handshake opens nothing more
        sub = _Subscription()
        match channel:
            case BuildLogsChannel(build_id=build_id):
                await self._subscribe_build_logs(sub, name, build_id, request)
            case ProjectEventsChannel(project=project):
                await self._subscribe_project_events(sub, name, project)
            case ProjectLogsChannel(project=project):
                await self._subscribe_project_logs(sub, name, project, request)
            case GenerationChannel(job_id=job_id):
                await self._subscribe_generation(sub, name, job_id)
            case RunLogsChannel(run_id=run_id):
                await self._subscribe_run_logs(sub, name, run_id, request)
        self._channels[name] = sub
        # Queued before the pump task first runs, so `subscribed` precedes the channel's lines.
        self._send(SubscribedFrame(channel=name))
        if sub.after is not None:
            sub.after()
        if sub.task is not None:
            sub.task.add_done_callback(lambda _: self._forget(name, sub))

    def _forget(self, name: str, sub: _Subscription) -> None:
        if self._channels.get(name) is sub:
            del self._channels[name]

    async def _unsubscribe(self, name: str) -> None:
        sub = self._channels.pop(name, None)
        if sub is None:
            raise BadRequest(f"not subscribed to {name!r}")
        await sub.close()
        self._send(UnsubscribedFrame(channel=name))

    async def _subscribe_build_logs(
        self, sub: _Subscription, name: str, build_id: str, request: Subscribe
    ) -> None:
        build = await load_build(self._request, build_id)
        batch = batch_limit(request.batch)

        async def pump() -> None:
            try:
                await pump_build_log(
                    self._app,
                    self._outbox,
                    build,
                    from_seq=request.from_seq,
                    channel=name,
                    batch=batch,
                )
            except Exception:
                log.exception("ws_log_stream_failed", build_id=build_id)
                message = "reading the log failed: subscribe again with from_seq"
                self._send(ErrorFrame(message=message, channel=name))

        sub.task = asyncio.create_task(pump())

    async def _subscribe_run_logs(
        self, sub: _Subscription, name: str, run_id: str, request: Subscribe
    ) -> None:
        run = await load_run(self._request, run_id)
        chunks = run_log_chunks(self._app[JS], run, from_seq=request.from_seq, follow=True)

        async def pump() -> None:
            try:
                await pump_run_log(self._outbox, chunks, run_id, channel=name)
            except Exception:
                log.exception("ws_run_log_stream_failed", run_id=run_id)
                message = "reading the log failed: subscribe again with from_seq"
                self._send(ErrorFrame(message=message, channel=name))

        sub.task = asyncio.create_task(pump())

    async def _subscribe_project_events(self, sub: _Subscription, name: str, project: str) -> None:
        project_id = await _resolve_project(self._app[POOL], project)
        require_scope(self._request, project_id, "read", not_found=f"no project {project!r}")
        outbox = self._outbox

        async def forward(msg: Msg) -> None:
            kind: EventKind
            type_: type[BuildStatusChanged | DeploymentStatusChanged | RunStatusChanged]
            if msg.subject.startswith(f"{SUBJECT_BUILD_EVENTS_PREFIX}."):
                kind, type_ = "build", BuildStatusChanged
            elif msg.subject.startswith(f"{SUBJECT_RUN_EVENTS_PREFIX}."):
                kind, type_ = "run", RunStatusChanged
            else:
                kind, type_ = "deployment", DeploymentStatusChanged
            try:
                msgspec.json.decode(msg.data, type=type_)
            except msgspec.DecodeError as exc:
                log.warning("event_undecodable", subject=msg.subject, error=str(exc))
                return
            # Forwarded as published: fields newer than this reader reach the client too.
            event = EventFrame(channel=name, kind=kind, event=msgspec.Raw(msg.data))
            outbox.offer(encode_frame(event))

        await self._subscribe_core(sub, project_events_filter(str(project_id)), forward)

    async def _subscribe_project_logs(
        self, sub: _Subscription, name: str, project: str, request: Subscribe
    ) -> None:
        project_id = await _resolve_project(self._app[POOL], project)
        require_scope(self._request, project_id, "read", not_found=f"no project {project!r}")
        if request.from_cursor is not None:
            query = AppLogQuery(from_cursor=request.from_cursor)
        else:
            query = AppLogQuery(tail=DEFAULT_APP_LOG_TAIL if request.tail is None else request.tail)
        batches = iter_app_log(self._app[JS], str(project_id), query, follow=True)

        async def pump() -> None:
            try:
                await pump_app_log(self._outbox, batches, channel=name)
            except Exception:
                log.exception("ws_app_log_stream_failed", project_id=str(project_id))
                message = "reading the log failed: subscribe again with from_cursor"
                self._send(ErrorFrame(message=message, channel=name))

        sub.task = asyncio.create_task(pump())

    async def _subscribe_generation(self, sub: _Subscription, name: str, job_id: str) -> None:
        """`subscribed`, then the job as it stands (a GenerationProgress from its row: no rate
        known, `items_per_s` 0), then the generator's progress events as they come. The NATS
        interest exists before the row is read, so no event between the two is missed; events
        that come before the snapshot went out wait for it."""
        outbox = self._outbox
        waiting: list[bytes] | None = []  # None once the snapshot is out

        async def forward(msg: Msg) -> None:
            try:
                msgspec.json.decode(msg.data)
            except msgspec.DecodeError:
                log.warning("event_undecodable", subject=msg.subject)
                return
            event = EventFrame(channel=name, kind="generation", event=msgspec.Raw(msg.data))
            if waiting is not None:
                waiting.append(encode_frame(event))
            else:
                outbox.offer(encode_frame(event))

        await self._subscribe_core(sub, [generation_event_subject(job_id)], forward)
        try:  # nothing is sent before this check: an unknown job or another project's is a 404
            job = await load_generation(self._request, job_id)
        except BaseException:
            await sub.close()
            raise
        snapshot = progress_of(job.id, job, at=datetime.now(UTC))
        first = EventFrame(channel=name, kind="generation", event=msgspec.Raw(encode(snapshot)))

        def send_first() -> None:
            nonlocal waiting
            queued, waiting = waiting or [], None
            for frame in [encode_frame(first), *queued]:
                outbox.offer(frame)

        sub.after = send_first

    async def _subscribe_core(
        self, sub: _Subscription, subjects: list[str], forward: Callable[[Msg], Awaitable[None]]
    ) -> None:
        nc = self._app[NC]
        try:
            for subject in subjects:
                sub.nats.append(await nc.subscribe(subject, cb=forward))
            # Once the server has the interest, `subscribed` promises no later event is missed.
            await nc.flush()
        except BaseException:
            await sub.close()
            raise


async def _resolve_project(pool: asyncpg.Pool, id_or_name: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        project = await resolve_project(conn, id_or_name)
    return project.id


def _channel_of(text: str) -> str | None:
    """The `channel` of a rejected message, if it has one, so the error can name it."""
    try:
        value = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):  # nested too deeply: no channel to name
        return None
    channel = value.get("channel") if isinstance(value, dict) else None
    return channel if isinstance(channel, str) else None
