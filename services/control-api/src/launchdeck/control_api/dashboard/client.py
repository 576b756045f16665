"""The dashboard's client of the control-api's HTTP API, over loopback, with the session's token.

The pages go through the API rather than the domain functions so that one authority (the API's
scopes and project-bound tokens, its validation, its audit log) decides what a browser may do.
The API is this very process: the call goes to the local address the browser's connection came
in on, which the server is certainly listening on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import web

from launchdeck.contracts.api import Problem
from launchdeck.control_api.dashboard.render import secured

T = TypeVar("T")

HTTP = web.AppKey("dashboard_http", aiohttp.ClientSession)
CALL_TIMEOUT_S = 30.0


class ApiError(Exception):
    """The API refused a call: its status and problem detail, shown to the user as they are."""

    def __init__(self, status: int, title: str, detail: str | None) -> None:
        super().__init__(f"{status} {title}: {detail or ''}")
        self.status = status
        self.title = title
        self.detail = detail or title


async def http_session(app: web.Application) -> AsyncIterator[None]:
    """One connection pool for the app's lifetime (a cleanup context)."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        app[HTTP] = session
        yield


def _loopback_base(request: web.Request) -> str:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise ApiError(503, "Service Unavailable", "the API's local address is unknown")
    host, port = str(sockname[0]), int(sockname[1])
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Api:
    """The API as the signed-in user sees it."""

    def __init__(self, request: web.Request, token: str) -> None:
        self._http = request.app[HTTP]
        self._base = _loopback_base(request)
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> bytes:
        """The body of a 2xx answer; ApiError with the problem's detail otherwise. `form` is a
        multipart body (aiohttp writes its Content-Type with the boundary)."""
        body: bytes | aiohttp.FormData | None = form
        headers = dict(self._headers)
        if json is not None:
            body = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        async with self._http.request(
            method, self._base + path, data=body, params=params, headers=headers
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise _error(response.status, response.reason or "", raw)
            return raw

    async def relay(
        self, request: web.Request, path: str, params: dict[str, str], *, headers: tuple[str, ...]
    ) -> web.StreamResponse:
        """Stream a 2xx answer of the API to the browser as it arrives (an export of any size in
        bounded memory), with the answer's `headers`; ApiError otherwise."""
        async with self._http.get(
            self._base + path, params=params, headers=self._headers
        ) as answer:
            if answer.status >= 400:
                raise _error(answer.status, answer.reason or "", await answer.read())
            response = secured(web.StreamResponse(status=answer.status))
            for name in headers:
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def get(self, path: str, into: type[T], **params: str) -> T:
        return msgspec.json.decode(await self.call("GET", path, params=params), type=into)

    async def send(self, method: str, path: str, into: type[T], json: Any = None) -> T:
        return msgspec.json.decode(await self.call(method, path, json=json), type=into)

    async def send_form(self, path: str, into: type[T], form: aiohttp.FormData) -> T:
        """POST a multipart body (an upload)."""
        return msgspec.json.decode(await self.call("POST", path, form=form), type=into)


def _error(status: int, reason: str, raw: bytes) -> ApiError:
    try:
        problem = msgspec.json.decode(raw, type=Problem)
    except msgspec.MsgspecError:
        return ApiError(status, reason, None)
    return ApiError(status, problem.title, problem.detail)
