"""The builds-list page cache over HTTP (`domain.page_cache`): where it lives, and the middleware
that invalidates it after every write request.

Every request with a method that may change something (anything but GET, HEAD, OPTIONS) drops
the cached pages of the project it acted on once its handler is done (so after its commit),
whatever the outcome; when the request names no project (`AUDIT_PROJECT`, noted by
`require_scope`: the webhooks, project creation), every page. Writes are rare next to reads, so
erring on the side of dropping costs nothing worth counting.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.api.auth import AUDIT_PROJECT
from launchdeck.control_api.domain.page_cache import PageCache

BUILD_PAGES = web.AppKey("build_pages", PageCache)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def setup_page_cache(app: web.Application) -> PageCache:
    app[BUILD_PAGES] = cache = PageCache()
    return cache


@web.middleware
async def page_cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    try:
        return await handler(request)
    finally:
        request.app[BUILD_PAGES].invalidate(request.get(AUDIT_PROJECT))


_encoder = msgspec.json.Encoder()


def encode_json(data: Any) -> bytes:
    return _encoder.encode(data)


def cached_json_response(body: bytes) -> web.Response:
    """A 200 of JSON `body` (as `json_io.json_response` answers)."""
    return web.Response(body=body, content_type="application/json")
