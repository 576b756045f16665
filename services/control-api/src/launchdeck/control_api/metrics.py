"""Prometheus metrics of one control-api process, rendered by `prometheus_client`.

Each `Metrics` has its own registry (several apps may run in one process, as in the tests).
Counters count in memory; the gauges of builds and deployments by status and of the outbox are
set from Postgres right before each scrape (`set_state`), so every replica reports the same,
current figures — every status of `contracts.statuses` always has its series (0 when none is in
it: an alert on `launchdeck_deployments{status="unhealthy"} > 0` needs it to exist before the
first unhealthy app). This module imports nothing of the control-api: every layer may count here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import get_args

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from launchdeck.contracts.statuses import BuildStatus, DeploymentStatus

# The classic text format (0.0.4): what every Prometheus and most scrapers read.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No `<name>_created` series next to every counter: they double the page for little use.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "launchdeck_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self._request_seconds = Histogram(
            "launchdeck_http_request_duration_seconds",
            "Time spent handling HTTP requests, by route.",
            ["method", "route"],
            registry=r,
        )
        self._events = Counter(
            "launchdeck_events", "Status events consumed, by result.", ["result"], registry=r
        )
        self._abandoned_jobs = Counter(
            "launchdeck_abandoned_jobs",
            "Commands JetStream stopped redelivering (max deliveries), by stream and outcome.",
            ["stream", "outcome"],
            registry=r,
        )
        self._stuck_jobs = Counter(
            "launchdeck_stuck_jobs_failed",
            "Builds and deployments failed by the sweep for staying silent past their deadline.",
            ["kind"],
            registry=r,
        )
        self._pruned = Counter(
            "launchdeck_pruned",
            "What periodic pruning removed: archived build logs, processed-event rows, artifacts.",
            ["what"],
            registry=r,
        )
        self._logs_swept = Counter(
            "launchdeck_build_logs_swept",
            "Finished builds' logs archived by the periodic sweep (missed after a crash).",
            registry=r,
        )
        self._websockets_open = Gauge(
            "launchdeck_websockets_open", "WebSocket connections open now.", registry=r
        )
        self._websocket_slow_closes = Counter(
            "launchdeck_websocket_slow_closes",
            "WebSockets closed with 1013 because the client did not keep up.",
            registry=r,
        )
        self._builds = Gauge("launchdeck_builds", "Builds by status.", ["status"], registry=r)
        self._deployments = Gauge(
            "launchdeck_deployments", "Deployments by status.", ["status"], registry=r
        )
        self._outbox_pending = Gauge(
            "launchdeck_outbox_pending", "Commands written but not yet published.", registry=r
        )
        # Also kept as plain numbers, for callers (and tests) that ask without scraping.
        self.events: dict[str, int] = {}
        self.abandoned_jobs: dict[tuple[str, str], int] = {}
        self.stuck_jobs: dict[str, int] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._request_seconds.labels(method, route).observe(seconds)

    def count_event(self, result: str) -> None:
        self._events.labels(result).inc()
        self.events[result] = self.events.get(result, 0) + 1

    def count_abandoned_job(self, stream: str, outcome: str) -> None:
        self._abandoned_jobs.labels(stream, outcome).inc()
        key = (stream, outcome)
        self.abandoned_jobs[key] = self.abandoned_jobs.get(key, 0) + 1

    def count_stuck_job(self, kind: str) -> None:
        self._stuck_jobs.labels(kind).inc()
        self.stuck_jobs[kind] = self.stuck_jobs.get(kind, 0) + 1

    def count_pruned(self, what: str, n: int) -> None:
        self._pruned.labels(what).inc(n)

    def count_logs_swept(self, n: int) -> None:
        self._logs_swept.inc(n)

    def count_websocket_slow_close(self) -> None:
        self._websocket_slow_closes.inc()

    def watch_open_websockets(self, count: Callable[[], int]) -> None:
        """Read the number of open WebSockets from `count` at each scrape."""
        self._websockets_open.set_function(count)

    def set_state(
        self,
        *,
        builds_by_status: Mapping[str, int],
        deployments_by_status: Mapping[str, int],
        outbox_pending: int,
    ) -> None:
        """The figures read from Postgres for this scrape: every known status (0 when absent),
        and any other a row holds (statuses that vanished from the rows drop out)."""
        for gauge, known, counts in (
            (self._builds, get_args(BuildStatus), builds_by_status),
            (self._deployments, get_args(DeploymentStatus), deployments_by_status),
        ):
            gauge.clear()
            for status, n in {**dict.fromkeys(known, 0), **counts}.items():
                gauge.labels(status).set(n)
        self._outbox_pending.set(outbox_pending)

    def render(self) -> bytes:
        # Whole numbers print as integers (`… 1`, not `… 1.0`), as this page always showed
        # them: scripts and alerts written against it match whole lines.
        return _WHOLE.sub(rb"\1", prometheus_client.generate_latest(self.registry))


# A sample value that is a whole number, at the end of its line.
_WHOLE = re.compile(rb"( -?\d+)\.0$", re.MULTILINE)
