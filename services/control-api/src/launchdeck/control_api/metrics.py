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
        self._outbox_lag = Gauge(
            "launchdeck_outbox_lag_seconds",
            "Age of the oldest command not yet published (0 when none waits).",
            registry=r,
        )
        # Read from JetStream at each scrape; absent while NATS is away (`launchdeck_nats_up`).
        self._nats_up = Gauge(
            "launchdeck_nats_up",
            "1 when this process is connected to NATS (the consumer figures are current).",
            registry=r,
        )
        self._consumer_pending = Gauge(
            "launchdeck_consumer_pending",
            "Messages of a durable consumer's stream not yet delivered to it (num_pending).",
            ["stream", "consumer"],
            registry=r,
        )
        self._consumer_ack_pending = Gauge(
            "launchdeck_consumer_ack_pending",
            "Messages delivered to a durable consumer and not yet acked (num_ack_pending).",
            ["stream", "consumer"],
            registry=r,
        )
        self._webhook_deliveries = Counter(
            "launchdeck_webhook_deliveries",
            "Git-host webhook deliveries, by host and outcome (queued, ignored, duplicate, "
            "rejected, not_found, invalid, too_large).",
            ["provider", "outcome"],
            registry=r,
        )
        self._schedule_ticks = Counter(
            "launchdeck_schedule_ticks",
            "Schedule ticks fired by this replica, by outcome when fired (queued: a build or "
            "run requested; running: an HTTP call made; skipped; failed) and when an HTTP call "
            "answered (succeeded, failed).",
            ["outcome"],
            registry=r,
        )
        self._scheduler_leader = Gauge(
            "launchdeck_scheduler_leader",
            "1 while this replica holds the scheduler lease (exactly one replica should).",
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Also kept as plain numbers, for callers (and tests) that ask without scraping.
        self.events: dict[str, int] = {}
        self.abandoned_jobs: dict[tuple[str, str], int] = {}
        self.stuck_jobs: dict[str, int] = {}
        self.schedule_ticks: dict[str, int] = {}
        self.webhook_deliveries: dict[tuple[str, str], int] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # `labels()` validates and locks on every call; its children are kept for good by the
        # registry anyway, so holding them here by key adds no series and skips that per request.
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self._requests.labels(method, route, str(status)),
                self._request_seconds.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

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

    def count_webhook_delivery(self, provider: str, outcome: str) -> None:
        self._webhook_deliveries.labels(provider, outcome).inc()
        key = (provider, outcome)
        self.webhook_deliveries[key] = self.webhook_deliveries.get(key, 0) + 1

    def count_schedule_tick(self, outcome: str) -> None:
        self._schedule_ticks.labels(outcome).inc()
        self.schedule_ticks[outcome] = self.schedule_ticks.get(outcome, 0) + 1

    def set_scheduler_leader(self, held: bool) -> None:
        self._scheduler_leader.set(1 if held else 0)

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
        outbox_lag_s: float = 0.0,
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
        self._outbox_lag.set(outbox_lag_s)

    def set_consumers(
        self, *, nats_up: bool, backlogs: Mapping[tuple[str, str], tuple[int, int]]
    ) -> None:
        """The durable consumers' backlogs read for this scrape, by (stream, consumer):
        (num_pending, num_ack_pending). A consumer that did not answer has no series (rather
        than a stale figure an alert would trust)."""
        self._nats_up.set(1 if nats_up else 0)
        self._consumer_pending.clear()
        self._consumer_ack_pending.clear()
        for (stream, consumer), (pending, ack_pending) in backlogs.items():
            self._consumer_pending.labels(stream, consumer).set(pending)
            self._consumer_ack_pending.labels(stream, consumer).set(ack_pending)

    def render(self) -> bytes:
        # Whole numbers print as integers (`… 1`, not `… 1.0`), as this page always showed
        # them: scripts and alerts written against it match whole lines.
        return _WHOLE.sub(rb"\1", prometheus_client.generate_latest(self.registry))


# A sample value that is a whole number, at the end of its line.
_WHOLE = re.compile(rb"( -?\d+)\.0$", re.MULTILINE)
