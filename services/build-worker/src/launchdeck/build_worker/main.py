"""build-worker entry point: pull build jobs and run them, any number of workers side by side.

Connects to NATS, provisions JetStream, registers the `launchdeck-build-worker` micro-service
(`nats micro ls`), and consumes `ld.jobs.build` from the durable `build-workers` consumer until
SIGTERM; builds still running then are handed back (nak) and redelivered as their next attempt.
"""

from __future__ import annotations

import asyncio

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import BuildRequested
from launchdeck.libs import micro
from launchdeck.libs.jetstream import connect, disconnect, provision
from launchdeck.libs.jobs import ConsumerSpec, consume
from launchdeck.libs.logging import get_logger
from launchdeck.libs.runner import run_service, run_until_stopped

log = get_logger(__name__)


def build_jobs(settings: Settings) -> ConsumerSpec[BuildRequested]:
    return ConsumerSpec(
        stream=s.STREAM_BUILDS,
        durable=s.CONSUMER_BUILD_WORKERS,
        subject=s.SUBJECT_BUILD_JOBS,
        message_type=BuildRequested,
        # Kept alive by in_progress() heartbeats while a build runs; after a worker dies
        # its build is redelivered once this expires.
        ack_wait_s=settings.ack_wait_s,
        max_deliver=3,
    )


async def serve(stop: asyncio.Event) -> None:
    settings = Settings.from_env()
    nc = await connect(settings.nats_url, name=s.SERVICE_BUILD_WORKER)
    try:
        js = nc.jetstream()
        await provision(js)
        worker = BuildWorker(js, settings)
        service = await micro.register(
            nc, s.SERVICE_BUILD_WORKER, "Clones, builds and packages releases", worker.status
        )
        log.info(
            "build_worker_ready",
            nats_url=settings.nats_url,
            build_dir=str(settings.build_dir),
            concurrency=settings.concurrency,
            allow_local_repos=settings.allow_local_repos,
        )
        consumer = asyncio.create_task(
            consume(js, build_jobs(settings), worker.handle_build, concurrency=settings.concurrency)
        )
        try:
            await run_until_stopped(stop, consumer)
        finally:
            await service.stop()
    finally:
        await disconnect(nc)


def main() -> None:
    run_service("build-worker", serve)


if __name__ == "__main__":
    main()
