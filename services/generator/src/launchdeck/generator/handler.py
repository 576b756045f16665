"""One generation job command (`GenerationRequested`), start to finish: the `libs.jobs` handler.

1. `start` (`ld.rpc.generation.start`): the job's spec, its totals so far (a redelivered job
   resumes from them) and the API key. A job that is gone is dropped; one already finished
   (its command redelivered after the end) is acknowledged at once, its final progress
   published again; a start answered with an error (the key's env var is missing) finishes the
   job `failed` with that reason, calling nothing.
2. The provider client: `providers.make_client` with the job's base URL or this generator's
   default for the provider, and the key (held by the client only: never logged).
3. `executor.run_job`, with this job's cancel event (`ld.control.generation.cancel`).
4. `finish` with the executor's status; the control-api announces the end (a final
   `GenerationProgress`) in the transaction that records it, then the command is acked.

A shutdown cancels the handler: the executor stores what finished and the jobs runner hands
the command back (nak), so another generator (or this one, restarted) resumes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    GenerationCancelRequested,
    GenerationJobSpec,
    GenerationProgress,
    GenerationRequested,
)
from launchdeck.contracts.statuses import GENERATION_FINISHED, GenerationStatus
from launchdeck.contracts.subjects import generation_event_subject
from launchdeck.generator.checkpoint import CheckpointUnavailable, NatsCheckpoint
from launchdeck.generator.executor import ExecutorOptions, run_job
from launchdeck.generator.providers import make_client, open_session
from launchdeck.generator.settings import Settings
from launchdeck.libs.generation.pricing import usd_text
from launchdeck.libs.generation.progress import ProgressSnapshot
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.logging import bind_ids, get_logger

log = get_logger(__name__)


def progress_event(
    spec: GenerationJobSpec,
    status: GenerationStatus,
    snapshot: ProgressSnapshot,
    error: str | None = None,
) -> GenerationProgress:
    return GenerationProgress(
        job_id=spec.job_id,
        project_id=spec.project_id,
        status=status,
        total=snapshot.total,
        done=snapshot.done,
        failed=snapshot.failed,
        tokens_in=snapshot.tokens_in,
        tokens_out=snapshot.tokens_out,
        cost_usd=usd_text(snapshot.cost_usd),
        items_per_s=round(snapshot.items_per_s, 3),
        eta_s=None if snapshot.eta_s is None else round(snapshot.eta_s, 1),
        error=error,
        at=datetime.now(UTC),
    )


class Generator:
    """The generation jobs this process runs, and the cancel requests it hears."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self._nc = nc
        self._settings = settings
        self._running: dict[str, asyncio.Event] = {}  # job id → its cancel event
        self.options = ExecutorOptions(retry_base_s=settings.retry_base_s)

    def status(self) -> dict[str, object]:
        return {"jobs_running": len(self._running), "jobs": sorted(self._running)}

    async def on_cancel(self, msg: Msg) -> None:
        """`ld.control.generation.cancel` (every generator hears it): stop the job if it runs
        here. A job not running here needs nothing: its row says cancelled, and a generator
        that takes its command later finds that in `start`."""
        try:
            request = decode(msg.data, GenerationCancelRequested)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("generation_cancel_undecodable", error=str(exc))
            return
        event = self._running.get(request.job_id)
        if event is not None:
            log.info("generation_cancel_received", job_id=request.job_id)
            event.set()

    @contextlib.contextmanager
    def _registered(self, job_id: str) -> Iterator[asyncio.Event]:
        event = self._running[job_id] = asyncio.Event()
        try:
            yield event
        finally:
            if self._running.get(job_id) is event:
                del self._running[job_id]

    async def _publish(self, event: GenerationProgress) -> None:
        """Progress is best effort (the totals are in the job's row): never fails the job."""
        with contextlib.suppress(Exception):
            await self._nc.publish(generation_event_subject(event.job_id), encode(event))

    async def handle(self, command: GenerationRequested, delivery: Delivery) -> Outcome:
        bind_ids(job_id=command.job_id, project_id=command.project_id)
        if command.job_id in self._running:  # the same command twice here: one run is enough
            log.warning("generation_job_already_running", job_id=command.job_id)
            return Outcome.RETRY
        with self._registered(command.job_id) as cancel:
            checkpoint = NatsCheckpoint(
                self._nc, command.job_id, give_up=cancel, working=delivery.working
            )
            try:
                return await self._run(command, delivery, checkpoint, cancel)
            except CheckpointUnavailable:
                # Cancelled while the control-api was away: its row already says cancelled.
                log.warning("generation_job_abandoned", reason="cancelled, control-api away")
                return Outcome.ACK

    async def _run(
        self,
        command: GenerationRequested,
        delivery: Delivery,
        checkpoint: NatsCheckpoint,
        cancel: asyncio.Event,
    ) -> Outcome:
        started = await checkpoint.start(delivery.num_delivered)
        spec = started.job
        if spec is None:
            log.error("generation_job_unknown", error=started.error)
            return Outcome.TERM
        if spec.status in GENERATION_FINISHED:
            log.info("generation_job_already_finished", status=spec.status)
            await self._publish(progress_event(spec, spec.status, _snapshot_of(spec)))
            return Outcome.ACK
        if started.error is not None:
            log.warning("generation_job_not_startable", error=started.error)
            await checkpoint.finish("failed", started.error)
            return Outcome.ACK
        log.info(
            "generation_job_started",
            attempt=delivery.num_delivered,
            provider=spec.provider,
            model=spec.model,
            total=spec.total,
            done=spec.done,
            failed=spec.failed,
        )

        async def publish(snapshot: ProgressSnapshot) -> None:
            await self._publish(progress_event(spec, "running", snapshot))

        base_url = spec.base_url or (
            self._settings.ollama_url
            if spec.provider == "ollama"
            else self._settings.openai_base_url
        )
        async with open_session(spec.concurrency) as session:
            client = make_client(
                spec.provider,
                session,
                base_url,
                api_key=started.api_key,
                timeout_s=self._settings.call_timeout_s,
            )
            outcome = await run_job(
                spec,
                checkpoint,
                client,
                cancel=cancel,
                on_progress=publish,
                on_activity=delivery.progress,
                options=self.options,
            )
        finished = await checkpoint.finish(outcome.status, outcome.error)
        totals = finished.totals
        log.info(
            "generation_job_finished",
            status=totals.status if totals else outcome.status,
            error=outcome.error,
            done=totals.done if totals else None,
            failed=totals.failed if totals else None,
        )
        return Outcome.ACK


def _snapshot_of(spec: GenerationJobSpec) -> ProgressSnapshot:
    return ProgressSnapshot(
        done=spec.done,
        failed=spec.failed,
        total=spec.total,
        tokens_in=spec.tokens_in,
        tokens_out=spec.tokens_out,
        cost_usd=Decimal(spec.cost_usd),
        items_per_s=0.0,
        eta_s=0.0 if spec.done + spec.failed >= spec.total else None,
    )
