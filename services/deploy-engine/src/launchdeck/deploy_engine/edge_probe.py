"""Requests through the edge, as a visitor would make them, to check that a site is served."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from launchdeck.deploy_engine.edge_routes import BUILD_HEADER, PROJECT_HEADER


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    reason: str | None = None


class EdgeProbe:
    def __init__(self, session: aiohttp.ClientSession, host: str, port: int) -> None:
        self._session = session
        self._base = f"http://{host}:{port}"

    async def get(self, site_host: str, path: str = "/") -> tuple[int, dict[str, str], bytes]:
        # identity: compare bytes as stored, whatever encodings this client could decode
        headers = {"Host": site_host, "Accept-Encoding": "identity"}
        async with self._session.get(
            f"{self._base}{path}", headers=headers, allow_redirects=False
        ) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def check(
        self,
        site_host: str,
        project: str,
        *,
        build_id: str | None = None,
        expect_body: bytes | None = None,
        timeout_s: float = 5.0,
        path: str = "/",
    ) -> ProbeResult:
        """Poll until the edge answers `site_host` (at `path`: an app's health path) from this
        project's route (and content)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = await self._once(site_host, project, build_id, expect_body, path)
            if result.ok or time.monotonic() > deadline:
                return result
            await asyncio.sleep(0.05)

    async def _once(
        self,
        site_host: str,
        project: str,
        build_id: str | None,
        expect_body: bytes | None,
        path: str = "/",
    ) -> ProbeResult:
        try:
            status, headers, body = await self.get(site_host, path)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return ProbeResult(False, None, f"edge unreachable: {exc or type(exc).__name__}")
        if headers.get(PROJECT_HEADER) != project:
            return ProbeResult(False, status, f"edge has no route for {site_host}")
        if build_id is not None and headers.get(BUILD_HEADER) != build_id:
            return ProbeResult(False, status, f"edge serves another build at {site_host}")
        if status >= 500:
            return ProbeResult(False, status, f"edge answered {status} for {site_host}{path}")
        if expect_body is not None and body != expect_body:
            return ProbeResult(False, status, f"edge serves other content at {site_host}/")
        return ProbeResult(True, status)
