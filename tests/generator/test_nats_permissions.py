"""The generator as its own NATS user (`libs.nats_access`) on a server configured from the table:
it takes a job from GENERATIONS, asks for its checkpoint (answered by the test, as the operator:
only the generator's side is under test here), publishes progress and hears cancels — all
without one refusal from the server."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import GenerationCancelRequested, GenerationProgress
from launchdeck.generator.handler import Generator
from launchdeck.generator.main import generation_jobs
from launchdeck.generator.settings import Settings
from launchdeck.libs.jobs import consume
from launchdeck.libs.provisioning import provision
from tests.fake_llm import FakeLLM
from tests.generator.test_handler import Control, new_job
from tests.libs.support import RestartableNats
from tests.libs.test_nats_access import login
from tests.polling import eventually


async def test_the_generators_user_runs_a_job_without_a_refusal(
    restartable_nats: RestartableNats, own_nc: Client, fake_llm: FakeLLM
) -> None:
    """Consume, checkpoint requests, progress and the cancel subscription, as `generator`."""
    await provision(own_nc.jetstream())
    control = Control()
    rpc = await own_nc.subscribe(f"{s.SUBJECT_GENERATION_RPC_PREFIX}.*", cb=control.answer)
    command = new_job(control, fake_llm, 20)
    progress: list[GenerationProgress] = []

    async def collect(msg: Msg) -> None:
        progress.append(decode(msg.data, GenerationProgress))

    events = await own_nc.subscribe(s.generation_event_subject(command.job_id), cb=collect)
    await own_nc.jetstream().publish(
        s.SUBJECT_GENERATION_JOBS, encode(command), headers={"Nats-Msg-Id": command.job_id}
    )
    settings = Settings(nats_url="", ollama_url="http://127.0.0.1:9", retry_base_s=0.01)
    try:
        async with login(restartable_nats, "generator") as generator:
            worker = Generator(generator.nc, settings)
            await generator.nc.subscribe(s.SUBJECT_GENERATION_CANCEL, cb=worker.on_cancel)
            consuming = asyncio.create_task(
                consume(generator.nc.jetstream(), generation_jobs(settings), worker.handle)
            )
            try:
                job = control.jobs[command.job_id]
                await eventually("the job finished", lambda: job.status == "succeeded" or None)
                await eventually("a progress event", lambda: progress)
                await own_nc.publish(
                    s.SUBJECT_GENERATION_CANCEL,
                    encode(GenerationCancelRequested(job_id=str(uuid.uuid4()))),
                )
                await generator.nc.flush()
            finally:
                consuming.cancel()
                await asyncio.gather(consuming, return_exceptions=True)
            assert generator.errors == []
    finally:
        await rpc.unsubscribe()
        await events.unsubscribe()
    assert job.totals().done == 20
    info = await own_nc.jetstream().stream_info(s.STREAM_GENERATIONS)
    assert info.state.messages == 0  # acked: gone from the work queue
