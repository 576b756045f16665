"""Logs over HTTP: a build's, and a running app's.

`GET /api/v1/builds/{id}/logs[?after_seq=N]`: the build's log so far, or complete once finished.
`text/plain` by default (one line of text per log line); NDJSON of
`{build_id, seq, ts, stream, line}` objects with `Accept: application/x-ndjson`.

`GET /api/v1/projects/{id}/logs[?tail=N | ?since=T[&limit=N] | ?from_cursor=C[&limit=N]]`: the
recent lines of the project's running app (every deployment and process, `logs.app`), as text
(`app_log_text`: time, process[deployment], line) or NDJSON of `AppLogRecord`. Without a
parameter: the last 100 lines. Live: the same URL's `/ws` (`ws.routes`).
"""

from __future__ import annotations

from contextlib import aclosing

import msgspec
from aiohttp import web

from launchdeck.contracts.api import AppLogRecord, LogRecord, app_log_text
from launchdeck.control_api.api.builds import load_build
from launchdeck.control_api.api.keys import JS, POOL
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.api.query import query_int, query_since
from launchdeck.control_api.domain.errors import Invalid
from launchdeck.control_api.logs.app import AppLogLine, AppLogQuery, iter_app_log
from launchdeck.control_api.logs.source import build_log_chunks

NDJSON = "application/x-ndjson"
# Recent app log lines: without a parameter, and at most.
DEFAULT_TAIL = 100
MAX_LINES = 10_000
DEFAULT_LIMIT = 1000


_encoder = msgspec.json.Encoder()


def wants_ndjson(request: web.Request) -> bool:
    return NDJSON in request.headers.get("Accept", "")


async def get_build_log(request: web.Request) -> web.Response:
    pool, js = request.app[POOL], request.app[JS]
    build = await load_build(request, request.match_info["id"])
    after_seq = query_int(request, "after_seq", default=0, minimum=0)
    ndjson = wants_ndjson(request)
    build_id = str(build.id)
    parts: list[bytes] = []
    # Buffered rather than streamed: the worker caps a build's log, and a failure half-way
    # still becomes a problem document instead of a truncated 200.
    chunks = build_log_chunks(pool, js, build, from_seq=after_seq + 1, follow=False)
    async with aclosing(chunks):
        async for chunk in chunks:
            if ndjson:
                parts.append(
                    _encoder.encode_lines(
                        [
                            LogRecord(
                                build_id=build_id,
                                seq=line.seq,
                                ts=line.ts,
                                stream=line.stream,
                                line=line.line,
                            )
                            for line in chunk.lines
                        ]
                    )
                )
            else:
                parts.append("".join(f"{line.line}\n" for line in chunk.lines).encode())
    return web.Response(
        body=b"".join(parts),
        content_type=NDJSON if ndjson else "text/plain",
        charset=None if ndjson else "utf-8",
    )


def app_log_query(request: web.Request, *, default_tail: int = DEFAULT_TAIL) -> AppLogQuery:
    """Where a reader of the app's log starts: `tail`, `since` or `from_cursor` (one at most,
    else 422); none of them: the last `default_tail` lines."""
    given = [name for name in ("tail", "since", "from_cursor") if request.query.get(name)]
    if len(given) > 1:
        raise Invalid.field(given[1], f"cannot be combined with {given[0]}")
    since = query_since(request)
    if since is not None:
        return AppLogQuery(since=since)
    if request.query.get("from_cursor"):
        return AppLogQuery(from_cursor=query_int(request, "from_cursor", default=1, minimum=1))
    return AppLogQuery(
        tail=query_int(request, "tail", default=default_tail, minimum=0, maximum=MAX_LINES)
    )


def app_log_record(entry: AppLogLine) -> AppLogRecord:
    line = entry.line
    return AppLogRecord(
        project_id=entry.project_id,
        deployment_id=entry.deployment_id,
        process=entry.process,
        seq=line.seq,
        ts=line.ts,
        stream=line.stream,
        line=line.line,
        cursor=entry.cursor,
    )


async def get_app_log(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    if "follow" in request.query:
        raise Invalid.field(
            "follow", f"follow the log live over a WebSocket: {request.path.rstrip('/')}/ws"
        )
    query = app_log_query(request)
    limit = (
        MAX_LINES
        if query.tail is not None
        else query_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LINES)
    )
    entries: list[AppLogLine] = []
    batches = iter_app_log(request.app[JS], str(project.id), query, follow=False)
    async with aclosing(batches):
        async for batch in batches:
            entries.extend(batch[: limit - len(entries)])
            if len(entries) >= limit:
                break
    if wants_ndjson(request):
        body = _encoder.encode_lines([app_log_record(e) for e in entries])
        return web.Response(body=body, content_type=NDJSON)
    text = "".join(
        app_log_text(e.line.ts, e.process, e.deployment_id, e.line.line) + "\n" for e in entries
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def setup_log_routes(app: web.Application) -> None:
    """Register `GET /api/v1/builds/{id}/logs` and `GET /api/v1/projects/{id}/logs`."""
    app.router.add_get("/api/v1/builds/{id}/logs", get_build_log)
    app.router.add_get("/api/v1/projects/{id}/logs", get_app_log)
