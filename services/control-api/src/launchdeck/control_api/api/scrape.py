"""What `/metrics` reads from its dependencies right before rendering: Postgres (builds and
deployments by status, the outbox backlog) and JetStream (each durable consumer's backlog).

The JetStream part has a short overall deadline and never raises: a scrape must answer quickly
while NATS is away (Prometheus then sees `launchdeck_nats_up 0` and no consumer series, not a
scrape that hangs or fails).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.store import builds, deployments, outbox
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# The durable consumers whose backlog is worth an alert: the work queues (commands waiting for a
# worker) and the control-api's own events. A consumer not created yet (its worker never
# started) has no series. The control-api's NATS user may ask for exactly these
# (`libs.nats_access`, CONSUMER.INFO).
DURABLE_CONSUMERS: tuple[tuple[str, str], ...] = (
    (s.STREAM_BUILDS, s.CONSUMER_BUILD_WORKERS),
    (s.STREAM_DEPLOYS, s.CONSUMER_DEPLOY_ENGINES),
    (s.STREAM_DEPLOYS, s.CONSUMER_UNDEPLOY_ENGINES),
    (s.STREAM_DEPLOYS, s.CONSUMER_RUN_ENGINES),
    (s.STREAM_GENERATIONS, s.CONSUMER_GENERATORS),
    (s.STREAM_EVENTS, s.CONSUMER_CONTROL_API_EVENTS),
)
CONSUMER_INFO_TIMEOUT_S = 1.0


async def read_postgres(conn: Any, metrics: Metrics) -> None:
    waiting = await outbox.backlog(conn)
    metrics.set_state(
        builds_by_status=await builds.count_by_status(conn),
        deployments_by_status=await deployments.count_by_status(conn),
        outbox_pending=waiting.pending,
        outbox_lag_s=waiting.lag_s,
    )


async def read_consumers(
    nc: Client, js: JetStreamContext, metrics: Metrics, timeout_s: float = CONSUMER_INFO_TIMEOUT_S
) -> None:
    if not nc.is_connected:
        metrics.set_consumers(nats_up=False, backlogs={})
        return
    answers = await asyncio.gather(
        *(_backlog(js, stream, consumer, timeout_s) for stream, consumer in DURABLE_CONSUMERS)
    )
    backlogs = {
        key: answer
        for key, answer in zip(DURABLE_CONSUMERS, answers, strict=True)
        if answer is not None
    }
    metrics.set_consumers(nats_up=nc.is_connected, backlogs=backlogs)


async def _backlog(
    js: JetStreamContext, stream: str, consumer: str, timeout_s: float
) -> tuple[int, int] | None:
    try:
        async with asyncio.timeout(timeout_s):
            info = await js.consumer_info(stream, consumer, timeout=timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # absent, not yet created, NATS away, no leader: no series
        log.debug("consumer_info_unavailable", stream=stream, consumer=consumer, error=repr(exc))
        return None
    return info.num_pending or 0, info.num_ack_pending or 0
