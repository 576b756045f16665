"""build-worker entry point: pull build jobs and run them, any number of workers side by side.

Runs the common skeleton (`libs.service`: NATS, JetStream, signals), registers the
`launchdeck-build-worker` micro-service (`nats micro ls`), and consumes `ld.jobs.build` from the
durable `build-workers` consumer until SIGTERM; builds still running then are handed back (nak)
and redelivered as their next attempt.
"""

from __future__ import annotations

import asyncio

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import BuildRequested
from launchdeck.libs.jetstream import public_nats_url
from launchdeck.libs.jobs import ConsumerSpec, consume
from launchdeck.libs.logging import get_logger
from launchdeck.libs.service import Service, run_service

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
        # Heartbeats alone would keep a stuck build "building" forever: the watchdog fails an
        # attempt that stops making progress (handler.py says what counts).
        stall_timeout_s=settings.stall_timeout_s,
    )


async def serve(service: Service[Settings]) -> None:
    settings = service.settings
    worker = BuildWorker(service.js, settings)
    await service.register("Clones, builds and packages releases", worker.status)
    log.info(
        "build_worker_ready",
        nats_url=public_nats_url(settings.nats_url),
        build_dir=str(settings.build_dir),
        concurrency=settings.concurrency,
        allow_local_repos=settings.allow_local_repos,
    )
    await service.run_until_stopped(
        asyncio.create_task(
            consume(
                service.js,
                build_jobs(settings),
                worker.handle_build,
                concurrency=settings.concurrency,
            ),
            name="build-jobs",
        )
    )


def main() -> None:
    run_service(s.SERVICE_BUILD_WORKER, Settings.from_env, serve)


if __name__ == "__main__":
    main()
