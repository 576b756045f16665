"""Per-request observation: the Prometheus request metrics and the access log.

The access log records the path without its query string (which may carry `?token=`). Probes
(`/health`, `/ready`, `/metrics`) are polled all day by supervisors and scrapers, so their lines
are logged at debug level: the console shows what people do, not the polling.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.api.keys import METRICS
from launchdeck.libs.logging import get_logger

access_log = get_logger("launchdeck.access")

PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})


def route_label(request: web.Request) -> str:
    """The route's pattern (`/api/v1/builds/{id}`), so ids never explode the label set."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        seconds = time.perf_counter() - started
        route = route_label(request)
        request.app[METRICS].observe_request(request.method, route, status, seconds)
        level = access_log.debug if request.path in PROBE_PATHS else access_log.info
        level(
            "http_request",
            method=request.method,
            path=request.path,
            route=route,
            status=status,
            ms=round(seconds * 1000, 1),
        )
