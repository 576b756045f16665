"""HTTP and WebSocket client for the control-api (`/api/v1`). The only module that speaks HTTP.

Errors come back as `ApiError` (parsed from `application/problem+json`, or synthesised from any
other error response) or `ApiUnreachable`; the commands turn both into a message and exit code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

Json = dict[str, Any]

TERMINAL_BUILD_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# A deployment that reached one of these will not change on its own any more.
SETTLED_DEPLOYMENT_STATUSES = frozenset({"active", "failed", "superseded", "rolled_back"})


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class ApiError(Exception):
    """An error response of the API (RFC 9457 problem details)."""

    status: int
    title: str
    detail: str | None = None
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title

    @classmethod
    def from_body(cls, status: int, reason: str | None, content_type: str, body: str) -> ApiError:
        problem: Any = None
        if "json" in content_type:
            try:
                problem = json.loads(body)
            except ValueError:
                problem = None
        if not isinstance(problem, dict):
            text = body.strip()
            detail = text[:300] if text and "html" not in content_type else None
            return cls(status=status, title=f"HTTP {status} {reason or ''}".strip(), detail=detail)
        errors = [
            FieldError(field=str(e.get("field", "")), message=str(e.get("message", "")))
            for e in problem.get("errors") or []
            if isinstance(e, dict)
        ]
        detail = problem.get("detail")
        return cls(
            status=int(problem.get("status") or status),
            title=str(problem.get("title") or f"HTTP {status}"),
            detail=str(detail) if detail else None,
            errors=errors,
        )


class ApiUnreachable(Exception):
    """No HTTP response at all (connection refused, DNS, timeout)."""


@dataclass(frozen=True)
class LogFrame:
    seq: int
    ts: str
    stream: str
    line: str


@dataclass(frozen=True)
class EndFrame:
    status: str


def _segment(value: str) -> str:
    return quote(value, safe="")


class LaunchdeckClient:
    """One session against one API; use as `async with LaunchdeckClient(url, token) as client`."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        request_timeout_s: float = 30.0,
        reconnect_attempts: int = 20,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._reconnect_attempts = reconnect_attempts
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LaunchdeckClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LaunchdeckClient used outside `async with`")
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: dict[str, str] | None = None,
        text: bool = False,
    ) -> Any:
        url = self.api_url + path
        try:
            async with self.session.request(
                method, url, json=body, params=params, headers=self._headers()
            ) as response:
                payload = await response.text()
                if response.status >= 400:
                    raise ApiError.from_body(
                        response.status, response.reason, response.content_type, payload
                    )
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.api_url}: {exc}") from exc
        if text:
            return payload
        return json.loads(payload) if payload else None

    # Health -----------------------------------------------------------------

    async def is_ready(self) -> bool:
        """`GET /ready` answers 200 (Postgres and NATS reachable)."""
        try:
            async with self.session.get(self.api_url + "/ready") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # Projects ---------------------------------------------------------------

    async def create_project(self, body: Json) -> Json:
        result: Json = await self._request("POST", "/api/v1/projects", body=body)
        return result

    async def get_project(self, project: str) -> Json:
        result: Json = await self._request("GET", f"/api/v1/projects/{_segment(project)}")
        return result

    async def list_projects(self) -> list[Json]:
        return await self._list("/api/v1/projects")

    async def _list(self, path: str) -> list[Json]:
        return [item async for item in self._pages(path)]

    async def _pages(self, path: str, limit: int | None = None) -> AsyncIterator[Json]:
        """Every item of a paginated list, fetched a page at a time as they are consumed."""
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else {}
            if limit is not None:
                params["limit"] = str(limit)
            page: Json = await self._request("GET", path, params=params or None)
            for item in page.get("items") or []:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # Builds -----------------------------------------------------------------

    async def trigger_build(self, project: str, *, ref: str | None = None) -> Json:
        body: Json = {"ref": ref} if ref else {}
        result: Json = await self._request(
            "POST", f"/api/v1/projects/{_segment(project)}/builds", body=body
        )
        return result

    def builds(self, project: str, page_size: int | None = None) -> AsyncIterator[Json]:
        """The project's builds, newest first."""
        return self._pages(f"/api/v1/projects/{_segment(project)}/builds", page_size)

    async def get_build(self, build_id: str) -> Json:
        result: Json = await self._request("GET", f"/api/v1/builds/{_segment(build_id)}")
        return result

    async def build_log_text(self, build_id: str) -> str:
        result: str = await self._request(
            "GET", f"/api/v1/builds/{_segment(build_id)}/logs", text=True
        )
        return result

    async def follow_build_log(
        self, build_id: str, *, from_seq: int = 1
    ) -> AsyncIterator[LogFrame | EndFrame]:
        """Log lines from `from_seq` on, live, then the end frame.

        A dropped connection is resumed with `from_seq` = the next line wanted; lines already
        seen are dropped, so the caller sees every line once, in order.
        """
        url = f"{self.api_url}/api/v1/builds/{_segment(build_id)}/logs/ws"
        next_seq = from_seq
        failures = 0
        while True:
            try:
                async with self.session.ws_connect(
                    url,
                    params={"from_seq": str(next_seq)},
                    headers=self._headers(),
                    heartbeat=30.0,
                ) as ws:
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        frame = json.loads(message.data)
                        kind = frame.get("type")
                        if kind == "log":
                            seq = int(frame["seq"])
                            if seq < next_seq:
                                continue
                            next_seq = seq + 1
                            failures = 0
                            yield LogFrame(
                                seq=seq,
                                ts=str(frame.get("ts", "")),
                                stream=str(frame.get("stream", "stdout")),
                                line=str(frame.get("line", "")),
                            )
                        elif kind == "end":
                            yield EndFrame(status=str(frame.get("status", "unknown")))
                            return
                        elif kind == "error":
                            raise ApiError(
                                status=0,
                                title="log stream error",
                                detail=str(frame.get("detail") or frame.get("message") or ""),
                            )
            except aiohttp.WSServerHandshakeError as exc:
                if 400 <= exc.status < 500:
                    raise ApiError(
                        status=exc.status,
                        title=f"HTTP {exc.status}",
                        detail=f"cannot open the log stream of build {build_id}",
                    ) from exc
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            # The connection ended without an `end` frame: resume where we are.
            failures += 1
            if failures > self._reconnect_attempts:
                raise ApiUnreachable(
                    f"lost the log stream of build {build_id} at line {next_seq - 1} "
                    f"and could not reconnect"
                )
            await asyncio.sleep(min(0.2 * 2 ** (failures - 1), 5.0))

    # Deployments ------------------------------------------------------------

    async def get_deployment(self, deployment_id: str) -> Json:
        result: Json = await self._request("GET", f"/api/v1/deployments/{_segment(deployment_id)}")
        return result

    async def list_deployments(self, project: str) -> list[Json]:
        return [d async for d in self.deployments(project)]

    def deployments(self, project: str, page_size: int | None = None) -> AsyncIterator[Json]:
        """The project's deployments, newest first."""
        return self._pages(f"/api/v1/projects/{_segment(project)}/deployments", page_size)

    async def rollback(self, project: str) -> Json:
        result: Json = await self._request(
            "POST", f"/api/v1/projects/{_segment(project)}/rollback", body={}
        )
        return result
