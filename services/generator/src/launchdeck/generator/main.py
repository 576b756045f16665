"""generator entry point.

Generation jobs arrive in a later issue; for now the service connects, provisions JetStream,
registers itself as a NATS micro-service (so `nats micro ls` shows it) and idles until SIGTERM.
"""

from __future__ import annotations

import asyncio

from launchdeck.contracts import subjects as s
from launchdeck.generator.settings import Settings
from launchdeck.libs import micro
from launchdeck.libs.jetstream import connect, disconnect, provision
from launchdeck.libs.logging import get_logger
from launchdeck.libs.runner import run_service

log = get_logger(__name__)


async def serve(stop: asyncio.Event) -> None:
    settings = Settings.from_env()
    nc = await connect(settings.nats_url, name=s.SERVICE_GENERATOR)
    try:
        await provision(nc.jetstream())
        service = await micro.register(
            nc,
            s.SERVICE_GENERATOR,
            "LLM content-generation jobs (not enabled yet)",
            lambda: {"jobs_running": 0, "accepting": False},
        )
        log.info("generator_ready", nats_url=settings.nats_url)
        await stop.wait()
        await service.stop()
    finally:
        await disconnect(nc)


def main() -> None:
    run_service("generator", serve)


if __name__ == "__main__":
    main()
