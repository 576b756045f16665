"""generator entry point: pull generation jobs and run them, any number of generators side by
side.

Runs the common skeleton (`libs.service`: NATS as its own user, a wait for the streams it uses,
stop on SIGTERM), registers the `launchdeck-generator` micro-service (`nats micro ls`; its
`status` lists the jobs running), listens to `ld.control.generation.cancel` (core NATS, every
generator hears it; the one running the job stops it) and consumes `ld.jobs.generate` from the
durable `generators` consumer, `LAUNCHDECK_GENERATOR_JOBS` jobs at once, until SIGTERM. One
generator runs a given job at a time (the work queue delivers its command to one consumer, kept
by heartbeats); jobs still running at a stop are handed back (nak) and resume elsewhere.
"""

from __future__ import annotations

import asyncio

from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import GenerationRequested
from launchdeck.generator.handler import Generator
from launchdeck.generator.settings import Settings
from launchdeck.libs.jetstream import public_nats_url
from launchdeck.libs.jobs import ConsumerSpec, consume
from launchdeck.libs.logging import get_logger
from launchdeck.libs.service import Service, run_service
from launchdeck.libs.settings import public_url

log = get_logger(__name__)

# A job is retried after crashes and stalls; its checkpoint makes every attempt continue where
# the last one stopped, so many attempts cost little (a shutdown's nak counts as one too).
MAX_DELIVER = 50


def generation_jobs(settings: Settings) -> ConsumerSpec[GenerationRequested]:
    return ConsumerSpec(
        stream=s.STREAM_GENERATIONS,
        durable=s.CONSUMER_GENERATORS,
        subject=s.SUBJECT_GENERATION_JOBS,
        message_type=GenerationRequested,
        # Kept alive by in_progress() heartbeats while a job runs; after a generator dies its
        # job is redelivered (and resumes) once this expires.
        ack_wait_s=settings.ack_wait_s,
        max_deliver=MAX_DELIVER,
        stall_timeout_s=settings.stall_timeout_s,
    )


async def serve(service: Service[Settings]) -> None:
    settings = service.settings
    generator = Generator(service.nc, settings)
    await service.nc.subscribe(s.SUBJECT_GENERATION_CANCEL, cb=generator.on_cancel)
    await service.register("LLM content-generation jobs", generator.status)
    log.info(
        "generator_ready",
        nats_url=public_nats_url(settings.nats_url),
        jobs=settings.jobs,
        ollama_url=public_url(settings.ollama_url),
        openai_base_url=public_url(settings.openai_base_url),
    )
    task = asyncio.create_task(
        consume(service.js, generation_jobs(settings), generator.handle, concurrency=settings.jobs),
        name="generation-jobs",
    )
    await service.run_until_stopped(task)


def main() -> None:
    run_service(s.SERVICE_GENERATOR, Settings.from_env, serve)


if __name__ == "__main__":
    main()
