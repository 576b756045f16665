"""generator entry point.

Generation jobs arrive in a later issue; for now the service runs the common skeleton
(`libs.service`: connects as its own NATS user, which may only answer micro requests so far;
stops on SIGTERM), registers itself as a NATS micro-service (so `nats micro ls` shows it) and
idles.
"""

from __future__ import annotations

from launchdeck.contracts import subjects as s
from launchdeck.generator.settings import Settings
from launchdeck.libs.jetstream import public_nats_url
from launchdeck.libs.logging import get_logger
from launchdeck.libs.service import Service, run_service

log = get_logger(__name__)


async def serve(service: Service[Settings]) -> None:
    await service.register(
        "LLM content-generation jobs (not enabled yet)",
        lambda: {"jobs_running": 0, "accepting": False},
    )
    log.info("generator_ready", nats_url=public_nats_url(service.settings.nats_url))
    await service.run_until_stopped()


def main() -> None:
    run_service(s.SERVICE_GENERATOR, Settings.from_env, serve)


if __name__ == "__main__":
    main()
