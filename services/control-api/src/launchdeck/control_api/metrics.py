"""Prometheus metrics in the text exposition format (no client library needed for these few).

Counters live in memory per process; gauges of builds and deployments by status are read from
Postgres at scrape time, so every replica reports the same, current figures.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.ws_connection import OutboxRegistry
from launchdeck.libs.logging import get_logger

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


access_log = get_logger("launchdeck.access")


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (method, route, status)
        self.request_seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.events: Counter[str] = Counter()  # by result
        self.abandoned_jobs: Counter[tuple[str, str]] = Counter()  # (stream, outcome)
        self.logs_swept = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        self.request_seconds[(method, route)] += seconds

    def count_event(self, result: str) -> None:
        self.events[result] += 1

    def count_abandoned_job(self, stream: str, outcome: str) -> None:
        self.abandoned_jobs[(stream, outcome)] += 1

    def count_logs_swept(self, n: int) -> None:
        self.logs_swept += n

    async def render(self, conn: Any, websockets: OutboxRegistry | None = None) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("launchdeck_http_requests_total", "counter", "HTTP requests by route and status.")
        for (method, route, status), n in sorted(self.requests.items()):
            labels = _labels(method=method, route=route, status=status)
            out.append(f"launchdeck_http_requests_total{labels} {n}")
        family(
            "launchdeck_http_request_duration_seconds_total",
            "counter",
            "Time spent handling HTTP requests, by route.",
        )
        for (method, route), seconds in sorted(self.request_seconds.items()):
            labels = _labels(method=method, route=route)
            out.append(f"launchdeck_http_request_duration_seconds_total{labels} {seconds:.6f}")
        family("launchdeck_events_total", "counter", "Status events consumed, by result.")
        for result, n in sorted(self.events.items()):
            out.append(f"launchdeck_events_total{_labels(result=result)} {n}")
        family(
            "launchdeck_abandoned_jobs_total",
            "counter",
            "Commands JetStream stopped redelivering (max deliveries), by stream and outcome.",
        )
        for (stream, outcome), n in sorted(self.abandoned_jobs.items()):
            labels = _labels(stream=stream, outcome=outcome)
            out.append(f"launchdeck_abandoned_jobs_total{labels} {n}")
        family(
            "launchdeck_build_logs_swept_total",
            "counter",
            "Finished builds' logs archived by the periodic sweep (missed after a crash).",
        )
        out.append(f"launchdeck_build_logs_swept_total {self.logs_swept}")
        if websockets is not None:
            family("launchdeck_websockets_open", "gauge", "WebSocket connections open now.")
            out.append(f"launchdeck_websockets_open {websockets.open_count}")
            family(
                "launchdeck_websocket_slow_closes_total",
                "counter",
                "WebSockets closed with 1013 because the client did not keep up.",
            )
            out.append(f"launchdeck_websocket_slow_closes_total {websockets.slow_closes}")
        family("launchdeck_builds", "gauge", "Builds by status.")
        for status, n in sorted((await builds.count_by_status(conn)).items()):
            out.append(f"launchdeck_builds{_labels(status=status)} {n}")
        family("launchdeck_deployments", "gauge", "Deployments by status.")
        for status, n in sorted((await deployments.count_by_status(conn)).items()):
            out.append(f"launchdeck_deployments{_labels(status=status)} {n}")
        family("launchdeck_outbox_pending", "gauge", "Commands written but not yet published.")
        pending = await conn.fetchval("SELECT count(*) FROM outbox")
        out.append(f"launchdeck_outbox_pending {pending}")
        return "\n".join(out) + "\n"


METRICS = web.AppKey("metrics", Metrics)


def route_label(request: web.Request) -> str:
    """The route's pattern (`/api/v1/builds/{id}`), so ids never explode the label set."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        # The access log: the path without its query string, which may carry `?token=`.
        access_log.info(
            "http_request",
            method=request.method,
            path=request.path,
            route=route,
            status=status,
            ms=round(seconds * 1000, 1),
        )
