"""The job handler over real NATS: its checkpoint requests answered by a responder in the test
that keeps the job in memory (tests/generator/memory_checkpoint.py; the control-api's own
server has its tests), the model the fake LLM over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationCancelRequested,
    GenerationClaimRequest,
    GenerationFinishRequest,
    GenerationProgress,
    GenerationRequested,
    GenerationSettleRequest,
    GenerationStartReply,
    GenerationStartRequest,
)
from launchdeck.generator.handler import Generator
from launchdeck.generator.settings import Settings
from launchdeck.libs.jobs import Delivery, Outcome
from tests.fake_llm import FakeLLM
from tests.generator.memory_checkpoint import MemoryCheckpoint, make_spec
from tests.polling import eventually


class Control:
    """The control-api's side, in memory: jobs by id, and how `start` answers."""

    def __init__(self) -> None:
        self.jobs: dict[str, MemoryCheckpoint] = {}
        self.start_error: str | None = None
        self.api_key: str | None = None

    async def answer(self, msg: Msg) -> None:
        reply: msgspec.Struct
        match msg.subject:
            case s.SUBJECT_GENERATION_START:
                start = decode(msg.data, GenerationStartRequest)
                job = self.jobs[start.job_id]
                reply = GenerationStartReply(
                    job=job.resumed_spec(), api_key=self.api_key, error=self.start_error
                )
            case s.SUBJECT_GENERATION_CLAIM:
                claim = decode(msg.data, GenerationClaimRequest)
                reply = await self.jobs[claim.job_id].claim(claim.after_index, claim.limit)
            case s.SUBJECT_GENERATION_SETTLE:
                settle = decode(msg.data, GenerationSettleRequest)
                reply = await self.jobs[settle.job_id].settle(settle.results)
            case s.SUBJECT_GENERATION_CACHE:
                reply = GenerationCacheReply(hits={})
                decode(msg.data, GenerationCacheRequest)
            case s.SUBJECT_GENERATION_FINISH:
                finish = decode(msg.data, GenerationFinishRequest)
                reply = await self.jobs[finish.job_id].finish(finish.status, finish.error)
            case _:
                raise AssertionError(msg.subject)
        await msg.respond(encode(reply))


@asynccontextmanager
async def control_api(nc: Client) -> AsyncIterator[Control]:
    control = Control()
    sub = await nc.subscribe(f"{s.SUBJECT_GENERATION_RPC_PREFIX}.*", cb=control.answer)
    try:
        yield control
    finally:
        await sub.unsubscribe()


@asynccontextmanager
async def progress_events(nc: Client, job_id: str) -> AsyncIterator[list[GenerationProgress]]:
    events: list[GenerationProgress] = []

    async def collect(msg: Msg) -> None:
        events.append(decode(msg.data, GenerationProgress))

    sub = await nc.subscribe(s.generation_event_subject(job_id), cb=collect)
    try:
        yield events
    finally:
        await sub.unsubscribe()


def delivery(attempt: int = 1) -> Delivery:
    return Delivery(num_delivered=attempt, max_deliver=50, subject="ld.jobs.generate", stream_seq=1)


def new_job(control: Control, fake: FakeLLM, items: int, **spec: Any) -> GenerationRequested:
    job_id = str(uuid.uuid4())
    control.jobs[job_id] = MemoryCheckpoint(
        make_spec(job_id=job_id, base_url=fake.url, **spec),
        [{"topic": f"item {i}"} for i in range(items)],
    )
    return GenerationRequested(job_id=job_id, project_id="p-1")


def generator(nc: Client) -> Generator:
    settings = Settings(nats_url="", ollama_url="http://127.0.0.1:9", retry_base_s=0.01)
    return Generator(nc, settings)


async def test_a_job_runs_to_the_end_and_reports_progress(nc: Client, fake_llm: FakeLLM) -> None:
    """Started, run against the job's base URL, settled and finished: ACK, every item done, and
    progress events (`running`) published on the job's subject."""
    async with control_api(nc) as control:
        command = new_job(control, fake_llm, 30)
        async with progress_events(nc, command.job_id) as events:
            outcome = await generator(nc).handle(command, delivery())
            await nc.flush()
            await eventually("a progress event", lambda: events)
    job = control.jobs[command.job_id]
    assert outcome is Outcome.ACK
    assert (job.status, job.totals().done) == ("succeeded", 30)
    assert fake_llm.total_calls == 30
    assert {e.status for e in events} == {"running"}
    assert events[-1].project_id == "p-1"


async def test_a_start_error_fails_the_job_without_a_call(nc: Client, fake_llm: FakeLLM) -> None:
    """The key's env var is missing: the job is finished `failed` with that reason."""
    async with control_api(nc) as control:
        control.start_error = "the project has no env var OPENAI_KEY (model.api_key_env)"
        command = new_job(control, fake_llm, 3, provider="openai")
        assert await generator(nc).handle(command, delivery()) is Outcome.ACK
    job = control.jobs[command.job_id]
    assert (job.status, job.error) == ("failed", control.start_error)
    assert fake_llm.total_calls == 0


async def test_a_finished_job_is_acked_and_its_end_published_again(
    nc: Client, fake_llm: FakeLLM
) -> None:
    """A command redelivered after the job ended: nothing is called, its final state is
    published again."""
    async with control_api(nc) as control:
        command = new_job(control, fake_llm, 3, status="cancelled")
        control.jobs[command.job_id].status = "cancelled"
        async with progress_events(nc, command.job_id) as events:
            assert await generator(nc).handle(command, delivery(2)) is Outcome.ACK
            await nc.flush()
            final = await eventually("the final event", lambda: events)
    assert (final[0].status, final[0].total, final[0].eta_s) == ("cancelled", 3, None)
    assert fake_llm.total_calls == 0


async def test_a_cancel_message_stops_the_running_job(nc: Client, fake_llm: FakeLLM) -> None:
    """`ld.control.generation.cancel` for the job running here: no new call, ends cancelled;
    a cancel for another job changes nothing."""
    fake_llm.latency_s = 0.1
    async with control_api(nc) as control:
        command = new_job(control, fake_llm, 100, concurrency=2)
        worker = generator(nc)
        sub = await nc.subscribe(s.SUBJECT_GENERATION_CANCEL, cb=worker.on_cancel)
        try:
            running = asyncio.create_task(worker.handle(command, delivery()))
            await eventually("calls made", lambda: fake_llm.total_calls >= 2 or None)
            assert worker.status()["jobs_running"] == 1
            await publish(nc, GenerationCancelRequested(job_id=str(uuid.uuid4())))
            await publish(nc, GenerationCancelRequested(job_id=command.job_id))
            assert await asyncio.wait_for(running, 10) is Outcome.ACK
        finally:
            await sub.unsubscribe()
    job = control.jobs[command.job_id]
    assert job.status == "cancelled"
    assert fake_llm.total_calls <= 6
    assert len(job.pending) >= 94
    assert worker.status()["jobs_running"] == 0


async def publish(nc: Client, message: msgspec.Struct) -> None:
    await nc.publish(s.SUBJECT_GENERATION_CANCEL, encode(message))
    await nc.flush()
