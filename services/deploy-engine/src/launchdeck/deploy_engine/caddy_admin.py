"""A small client of Caddy's admin API (aiohttp; unix socket or loopback TCP).

Addresses use Caddy's own notation: `unix//abs/path/admin.sock` or `host:port`
(`http://host:port` is accepted too). Over a unix socket Caddy accepts the Host `127.0.0.1`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from launchdeck.deploy_engine import edge_routes as er

Json = dict[str, Any]


class CaddyAdminError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"caddy admin {method} {path}: {status} {message}")
        self.status = status


def parse_admin_address(address: str) -> tuple[str | None, str]:
    """(unix socket path or None, base URL) for an admin address."""
    if address.startswith("unix/"):
        path = address[len("unix/") :]
        if not path:
            raise ValueError(f"invalid caddy admin address {address!r}")
        return path, "http://127.0.0.1"
    if address.startswith(("http://", "https://")):
        return None, address.rstrip("/")
    return None, f"http://{address}"


class CaddyAdmin:
    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self.address = address
        self._socket, self._base = parse_admin_address(address)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No keep-alive: Caddy replaces its admin listener on every config change and a
            # pooled connection to the old one may be reset under the next request.
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self._socket, force_close=True)
                if self._socket
                else aiohttp.TCPConnector(force_close=True)
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> CaddyAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One admin call; connection failures (request not sent) are retried briefly."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                return await self._request(method, path, body)
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _request(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._client().request(
            method, f"{self._base}{path}", data=data, headers=headers
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("error", text)
                except (ValueError, AttributeError):
                    message = text
                raise CaddyAdminError(resp.status, method, path, str(message).strip())
            return json.loads(text) if text.strip() else None

    async def get(self, path: str) -> Any:
        """GET a config path or `/id/...`; None when it does not exist (Caddy answers 404 for
        an unknown @id and 400 "invalid traversal path" below a missing key)."""
        try:
            return await self.request("GET", path)
        except CaddyAdminError as exc:
            if exc.status in (400, 404):
                return None
            raise

    async def ping(self) -> bool:
        try:
            await self._request("GET", "/config/admin", None)  # no retry: a probe
        except (TimeoutError, aiohttp.ClientError, OSError, CaddyAdminError):
            return False
        return True

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.ping():
            if time.monotonic() > deadline:
                raise TimeoutError(f"caddy admin API at {self.address} not answering")
            await asyncio.sleep(0.05)

    # --- the launchdeck server and its routes -------------------------------------------

    async def ensure_server(self, listen: str) -> bool:
        """Create or repair the `launchdeck` server; True when it was (re)written.

        An existing server with the right listener and route skeleton is left alone, so sites
        keep being served across a deploy-engine restart.
        """
        if await self.server_intact(listen):
            return False
        path = f"/config/apps/http/servers/{er.SERVER_NAME}"
        exists = await self.get(path) is not None
        await self.request("PATCH" if exists else "PUT", path, er.server_config(listen))
        return True

    async def server_intact(self, listen: str) -> bool:
        """The server listens where it should and has its route skeleton (a few small GETs,
        never the whole config, which grows with the number of sites)."""
        path = f"/config/apps/http/servers/{er.SERVER_NAME}"
        wanted = er.server_config(listen)
        if await self.get(f"{path}/listen") != wanted["listen"]:
            return False
        if await self.get(f"{path}/automatic_https") != wanted["automatic_https"]:
            return False
        if await self.get(f"/id/{er.SITES_ID}/handle/0/handler") != "subroute":
            return False
        fallback_id = await self.get(f"/id/{er.FALLBACK_ID}/@id")
        return bool(fallback_id == er.FALLBACK_ID)

    async def upsert_route(self, route: Json, *, first: bool = False) -> None:
        """Replace the route with this `@id`, or add it (at the start of the sites when `first`)."""
        route_id = route["@id"]
        try:
            await self.request("PATCH", f"/id/{route_id}", route)
            return
        except CaddyAdminError as exc:
            if exc.status != 404:
                raise
        routes = f"/id/{er.SITES_ID}/handle/0/routes"
        if first:
            await self.request("PUT", f"{routes}/0", route)
        else:
            await self.request("POST", routes, route)

    async def delete_route(self, route_id: str) -> bool:
        try:
            await self.request("DELETE", f"/id/{route_id}")
        except CaddyAdminError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def upstream_requests(self, address: str) -> int:
        """Requests the proxy has in flight to the upstream `address` (`127.0.0.1:<port>`): 0 once
        no loaded config uses it any more (Caddy forgets an upstream with its last config)."""
        upstreams = await self.request("GET", "/reverse_proxy/upstreams")
        for upstream in upstreams or []:
            if isinstance(upstream, dict) and upstream.get("address") == address:
                return int(upstream.get("num_requests") or 0)
        return 0

    async def site_route_ids(self) -> list[str]:
        routes = await self.request("GET", f"/id/{er.SITES_ID}/handle/0/routes")
        return [str(r.get("@id")) for r in routes or [] if isinstance(r, dict)]
