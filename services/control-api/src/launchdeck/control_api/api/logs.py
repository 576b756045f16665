"""`GET /api/v1/builds/{id}/logs[?after_seq=N]`: the log so far, or complete once finished.

`text/plain` by default (one line of text per log line); NDJSON of
`{build_id, seq, ts, stream, line}` objects with `Accept: application/x-ndjson`.
"""

from __future__ import annotations

from contextlib import aclosing

import msgspec
from aiohttp import web

from launchdeck.contracts.api import LogRecord
from launchdeck.control_api.api.builds import load_build
from launchdeck.control_api.api.keys import JS, POOL
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.logs.source import build_log_chunks

NDJSON = "application/x-ndjson"


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


def setup_log_routes(app: web.Application) -> None:
    """Register `GET /api/v1/builds/{id}/logs`."""
    app.router.add_get("/api/v1/builds/{id}/logs", get_build_log)
