"""HTTP and WebSocket client for the control-api (`/api/v1`). The only module that speaks HTTP.

Responses are decoded with the server's own types (`launchdeck.contracts.api`, `.ws`), so a
field the CLI reads cannot silently differ from what the API sends. Errors come back as
`ApiError` (parsed from `application/problem+json`, or synthesised from any other error response)
or `ApiUnreachable`; the commands turn both into a message and exit code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from launchdeck.contracts.api import (
    BuildCreate,
    BuildOut,
    DeploymentOut,
    EnvVarOut,
    EnvVarSet,
    Page,
    Problem,
    ProblemField,
    ProjectCreate,
    ProjectCreated,
    ProjectOut,
    ProjectUpdate,
    RunCreate,
    RunLogRecord,
    RunOut,
)
from launchdeck.contracts.webhooks import WebhookSecretOut
from launchdeck.contracts.ws import (
    AppLogFrame,
    EndFrame,
    ErrorFrame,
    EventFrame,
    LogFrame,
    LogsFrame,
    Subscribe,
    decode_frame,
)

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_run_log_decoder = msgspec.json.Decoder(RunLogRecord)


@dataclass
class ApiError(Exception):
    """An error response of the API (RFC 9457 problem details)."""

    status: int
    title: str
    detail: str | None = None
    errors: list[ProblemField] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title

    @classmethod
    def from_body(cls, status: int, reason: str | None, content_type: str, body: str) -> ApiError:
        problem: Problem | None = None
        if "json" in content_type:
            try:
                problem = msgspec.json.decode(body, type=Problem)
            except (msgspec.DecodeError, msgspec.ValidationError):
                problem = None
        if problem is None:
            text = body.strip()
            detail = text[:300] if text and "html" not in content_type else None
            return cls(status=status, title=f"HTTP {status} {reason or ''}".strip(), detail=detail)
        return cls(
            status=problem.status or status,
            title=problem.title or f"HTTP {status}",
            detail=problem.detail or None,
            errors=list(problem.errors),
        )


class ApiUnreachable(Exception):
    """No HTTP response at all (connection refused, DNS, timeout)."""


class UnexpectedResponse(Exception):
    """A 2xx response that is not what this API sends (another server on that URL?)."""


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

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: msgspec.Struct | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> bytes:
        """The response body of a 2xx answer; ApiError for an error answer. `form`: a
        multipart body instead of JSON (a file upload)."""
        url = self.api_url + path
        headers = {**self._headers(), **(headers or {})}
        data: bytes | aiohttp.FormData | None = form
        if body is not None:
            data = _encoder.encode(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=data, params=params, headers=headers
            ) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise ApiError.from_body(
                        response.status,
                        response.reason,
                        response.content_type,
                        payload.decode("utf-8", errors="replace"),
                    )
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.api_url}: {exc}") from exc
        return payload

    async def _call(
        self,
        type_: type[T],
        method: str,
        path: str,
        *,
        body: msgspec.Struct | None = None,
        params: dict[str, str] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> T:
        """`_send`, decoding the answer as `type_`."""
        payload = await self._send(method, path, body=body, params=params, form=form)
        try:
            return msgspec.json.decode(payload, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponse(
                f"{method} {path}: the answer is not a Launchdeck API response ({exc})"
            ) from None

    async def download(
        self, path: str, sink: BinaryIO, *, params: dict[str, str] | None = None
    ) -> int:
        """Stream a 2xx answer's body into `sink` as it arrives (an export may be larger than
        memory, and take longer than one request's timeout); the bytes written."""
        url = self.api_url + path
        # No total limit: only a stall (no byte for `sock_read` seconds) ends it.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=300.0)
        written = 0
        try:
            async with self.session.get(
                url, params=params, headers=self._headers(), timeout=timeout
            ) as response:
                if response.status >= 400:
                    payload = await response.read()
                    raise ApiError.from_body(
                        response.status,
                        response.reason,
                        response.content_type,
                        payload.decode("utf-8", errors="replace"),
                    )
                async for chunk in response.content.iter_chunked(64 * 1024):
                    sink.write(chunk)
                    written += len(chunk)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise ApiUnreachable(f"the download from {url} failed: {exc}") from exc
        return written

    async def follow_events(self, channel: str) -> AsyncIterator[EventFrame]:
        """The event frames of `channel` on the multiplexed `/api/v1/ws`, for as long as the
        caller reads. A dropped connection subscribes again; channels whose first frame is the
        current state (`generation:<id>`) thus lose nothing that matters."""
        url = f"{self.api_url}/api/v1/ws"
        request = _encoder.encode(Subscribe(channel=channel)).decode()
        failures = 0
        while True:
            try:
                async with self.session.ws_connect(
                    url, headers=self._headers(), heartbeat=30.0
                ) as ws:
                    await ws.send_str(request)
                    async for message in ws:
                        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                            continue
                        try:
                            frame = decode_frame(message.data)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            raise UnexpectedResponse(f"not a WebSocket frame: {exc}") from None
                        match frame:
                            case EventFrame(channel=name) if name == channel:
                                failures = 0
                                yield frame
                            case ErrorFrame(message=problem, channel=name) if name in (
                                channel,
                                None,
                            ):
                                raise ApiError(status=0, title=f"{channel}", detail=problem)
            except aiohttp.WSServerHandshakeError as exc:
                _refused(exc, f"cannot open the WebSocket for {channel}")
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            failures += 1
            await self._before_reconnect(
                failures, f"lost the WebSocket of {channel} and could not reconnect"
            )

    # Health -----------------------------------------------------------------

    async def is_ready(self) -> bool:
        """`GET /ready` answers 200 (Postgres and NATS reachable)."""
        try:
            async with self.session.get(self.api_url + "/ready") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # Projects ---------------------------------------------------------------

    async def create_project(self, project: ProjectCreate) -> ProjectCreated:
        return await self._call(ProjectCreated, "POST", "/api/v1/projects", body=project)

    async def get_project(self, project: str) -> ProjectOut:
        return await self._call(ProjectOut, "GET", f"/api/v1/projects/{_segment(project)}")

    async def update_project(self, project: str, change: ProjectUpdate) -> ProjectOut:
        """`PATCH`: the fields set in `change` replace the project's (`build` and `resources`
        each as a whole)."""
        return await self._call(
            ProjectOut, "PATCH", f"/api/v1/projects/{_segment(project)}", body=change
        )

    async def list_projects(self) -> list[ProjectOut]:
        return [p async for p in self._pages(ProjectOut, "/api/v1/projects")]

    async def rotate_webhook_secret(self, project: str) -> WebhookSecretOut:
        """A new webhook secret for `project` (the old one stops verifying at once)."""
        return await self._call(
            WebhookSecretOut, "POST", f"/api/v1/projects/{_segment(project)}/webhook-secret"
        )

    async def _pages(
        self,
        type_: type[T],
        path: str,
        limit: int | None = None,
        query: dict[str, str] | None = None,
    ) -> AsyncIterator[T]:
        """Every item of a paginated list, fetched a page at a time as they are consumed
        (`query`: the list's own filters, sent with every page)."""
        cursor: str | None = None
        while True:
            params = dict(query or {})
            if cursor:
                params["cursor"] = cursor
            if limit is not None:
                params["limit"] = str(limit)
            page = await self._call(Page[type_], "GET", path, params=params or None)  # type: ignore[valid-type]
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return

    # Builds -----------------------------------------------------------------

    async def trigger_build(self, project: str, *, ref: str | None = None) -> BuildOut:
        return await self._call(
            BuildOut,
            "POST",
            f"/api/v1/projects/{_segment(project)}/builds",
            body=BuildCreate(ref=ref),
        )

    def builds(self, project: str, page_size: int | None = None) -> AsyncIterator[BuildOut]:
        """The project's builds, newest first."""
        return self._pages(BuildOut, f"/api/v1/projects/{_segment(project)}/builds", page_size)

    async def get_build(self, build_id: str) -> BuildOut:
        return await self._call(BuildOut, "GET", f"/api/v1/builds/{_segment(build_id)}")

    async def build_log_text(self, build_id: str) -> str:
        payload = await self._send("GET", f"/api/v1/builds/{_segment(build_id)}/logs")
        return payload.decode("utf-8", errors="replace")

    async def follow_build_log(
        self, build_id: str, *, from_seq: int = 1
    ) -> AsyncIterator[LogFrame | EndFrame]:
        """Log lines from `from_seq` on, live, then the end frame.

        A dropped connection is resumed with `from_seq` = the next line wanted; lines already
        seen are dropped, so the caller sees every line once, in order. Lines are asked for in
        batched frames (fewer frames to decode when a log bursts) and handed out one by one.
        """
        url = f"{self.api_url}/api/v1/builds/{_segment(build_id)}/logs/ws"
        next_seq = from_seq
        failures = 0
        while True:
            try:
                async with self.session.ws_connect(
                    url,
                    params={"from_seq": str(next_seq), "batch": "true"},
                    headers=self._headers(),
                    heartbeat=30.0,
                ) as ws:
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            frame = decode_frame(message.data)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            raise UnexpectedResponse(f"not a log frame: {exc}") from None
                        match frame:
                            case LogsFrame(lines=lines):
                                for entry in lines:
                                    if entry.seq >= next_seq:
                                        next_seq = entry.seq + 1
                                        failures = 0
                                        yield LogFrame(
                                            build_id=frame.build_id,
                                            seq=entry.seq,
                                            ts=entry.ts,
                                            stream=entry.stream,
                                            line=entry.line,
                                        )
                            case LogFrame(seq=seq) if seq >= next_seq:
                                next_seq = seq + 1
                                failures = 0
                                yield frame
                            case EndFrame():
                                yield frame
                                return
                            case ErrorFrame(message=problem):
                                raise ApiError(status=0, title="log stream error", detail=problem)
            except aiohttp.WSServerHandshakeError as exc:
                _refused(exc, f"cannot open the log stream of build {build_id}")
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            # The connection ended without an `end` frame: resume where we are.
            failures += 1
            await self._before_reconnect(
                failures,
                f"lost the log stream of build {build_id} at line {next_seq - 1} "
                f"and could not reconnect",
            )

    async def _before_reconnect(self, failures: int, gave_up: str) -> None:
        """Wait before the `failures`-th reconnection of a log socket, or give up."""
        if failures > self._reconnect_attempts:
            raise ApiUnreachable(gave_up)
        await asyncio.sleep(min(0.2 * 2 ** (failures - 1), 5.0))

    async def cancel_build(self, build_id: str) -> BuildOut:
        """Cancel a queued or running build (ApiError 409 once it has finished)."""
        return await self._call(BuildOut, "POST", f"/api/v1/builds/{_segment(build_id)}/cancel")

    # App logs ---------------------------------------------------------------

    async def app_log_text(self, project: str, *, tail: int) -> str:
        """The last `tail` lines of the project's running app, as text."""
        payload = await self._send(
            "GET", f"/api/v1/projects/{_segment(project)}/logs", params={"tail": str(tail)}
        )
        return payload.decode("utf-8", errors="replace")

    async def follow_app_log(self, project: str, *, tail: int) -> AsyncIterator[AppLogFrame]:
        """The last `tail` lines of the project's running app, then its new lines for as long
        as the caller reads. A dropped connection resumes from the cursor of the last line seen;
        lines already seen (by deployment, process and seq) are dropped."""
        url = f"{self.api_url}/api/v1/projects/{_segment(project)}/logs/ws"
        params = {"tail": str(tail)}
        seen: dict[tuple[str, str], int] = {}
        failures = 0
        while True:
            try:
                async with self.session.ws_connect(
                    url, params=params, headers=self._headers(), heartbeat=30.0
                ) as ws:
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            frame = decode_frame(message.data)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            raise UnexpectedResponse(f"not a log frame: {exc}") from None
                        match frame:
                            case AppLogFrame():
                                key = (frame.deployment_id, frame.process)
                                params = {"from_cursor": str(frame.cursor)}
                                failures = 0
                                if frame.seq > seen.get(key, 0):
                                    seen[key] = frame.seq
                                    yield frame
                            case ErrorFrame(message=problem):
                                raise ApiError(status=0, title="log stream error", detail=problem)
            except aiohttp.WSServerHandshakeError as exc:
                _refused(exc, f"cannot open the log of project {project}")
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            failures += 1
            await self._before_reconnect(
                failures, f"lost the log of project {project} and could not reconnect"
            )

    # Deployments ------------------------------------------------------------

    async def get_deployment(self, deployment_id: str) -> DeploymentOut:
        return await self._call(
            DeploymentOut, "GET", f"/api/v1/deployments/{_segment(deployment_id)}"
        )

    async def list_deployments(self, project: str) -> list[DeploymentOut]:
        return [d async for d in self.deployments(project)]

    def deployments(
        self, project: str, page_size: int | None = None
    ) -> AsyncIterator[DeploymentOut]:
        """The project's deployments, newest first."""
        return self._pages(
            DeploymentOut, f"/api/v1/projects/{_segment(project)}/deployments", page_size
        )

    async def rollback(self, project: str) -> DeploymentOut:
        return await self._call(
            DeploymentOut, "POST", f"/api/v1/projects/{_segment(project)}/rollback"
        )

    async def redeploy(self, project: str) -> DeploymentOut:
        """The live production build deployed again (no rebuild), with the current env vars."""
        return await self._call(
            DeploymentOut, "POST", f"/api/v1/projects/{_segment(project)}/redeploy"
        )

    # Env vars ---------------------------------------------------------------

    async def list_env(self, project: str) -> list[EnvVarOut]:
        """The project's env vars: names and targets (the API never returns a value)."""
        return [
            v async for v in self._pages(EnvVarOut, f"/api/v1/projects/{_segment(project)}/env")
        ]

    async def set_env(self, project: str, key: str, body: EnvVarSet) -> EnvVarOut:
        return await self._call(
            EnvVarOut,
            "PUT",
            f"/api/v1/projects/{_segment(project)}/env/{_segment(key)}",
            body=body,
        )

    async def unset_env(self, project: str, key: str) -> None:
        await self._send("DELETE", f"/api/v1/projects/{_segment(project)}/env/{_segment(key)}")

    # Runs -------------------------------------------------------------------

    async def start_run(self, project: str, body: RunCreate) -> RunOut:
        return await self._call(
            RunOut, "POST", f"/api/v1/projects/{_segment(project)}/runs", body=body
        )

    def runs(self, project: str, page_size: int | None = None) -> AsyncIterator[RunOut]:
        """The project's runs, newest first."""
        return self._pages(RunOut, f"/api/v1/projects/{_segment(project)}/runs", page_size)

    async def get_run(self, run_id: str) -> RunOut:
        return await self._call(RunOut, "GET", f"/api/v1/runs/{_segment(run_id)}")

    async def run_log_records(self, run_id: str, *, after_seq: int = 0) -> list[RunLogRecord]:
        """The run's log lines after `after_seq` that the API has now."""
        payload = await self._send(
            "GET",
            f"/api/v1/runs/{_segment(run_id)}/logs",
            params={"after_seq": str(after_seq)},
            headers={"Accept": "application/x-ndjson"},
        )
        return _run_log_decoder.decode_lines(payload)


def _refused(exc: aiohttp.WSServerHandshakeError, detail: str) -> None:
    """A handshake the API refused (4xx) is final; any other failure is retried."""
    if 400 <= exc.status < 500:
        raise ApiError(status=exc.status, title=f"HTTP {exc.status}", detail=detail) from exc
