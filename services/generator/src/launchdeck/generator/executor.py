"""One run of a generation job: the logic, with no NATS in it (docs/architecture.md,
"Generator: running a job").

`run_job` pages through the job's pending items (`Checkpoint.claim`, 256 at a time, in index
order), runs up to `concurrency` items at once and hands each finished item to the `Settler`.
Per item, the template's steps run in order, each step's prompt rendered with the item's
variables and the outputs of the steps before it (`libs.prompts`), sent as one user message.

- **Calls.** Every attempt takes a slot of the `AdaptiveLimiter` (halved on 429/503) and a
  token of the requests-per-minute `RateLimiter`; transient errors (and a `json` step's output
  that is not JSON or does not fit its schema) are retried up to 3 attempts with backoff
  (`limits.with_retries`), then fail the item with the last reason. A permanent error fails the
  item at once; 401/403/404 (a bad key, an unknown model) fail the *job* with that reason — so
  do the first `fail_fast_items` (5) items of a run all failing with one permanent reason: every
  item would fail the same way, so no more calls are made.
- **Budget.** In this process (one generator runs a job at a time), starting from what the job
  had spent: before an item's first call its whole estimate is reserved (each step's prompt,
  the later ones rendered with placeholders, plus `max_tokens` out per step: an overestimate)
  and settled with the provider's usage once the item ends. A refusal stops the job as
  `budget_exceeded`: no more items are claimed, items in flight finish, the rest stay pending.
- **Response cache.** A cacheable step (`fingerprint` not None: a seed or temperature 0) is
  looked up first when the job allows; a hit costs nothing, uses no slot and no rate token.
- **Cancel** (the `cancel` event: the API's word, or a claim/settle reply saying `cancelled`)
  and a job failure stop every new call at once; calls in flight finish and their items are
  settled. An item that would need another call is abandoned (it stays pending).
- **Progress** is reported through `on_progress` whenever the tracker allows (at most 4 a
  second) and on a 250 ms tick; the caller publishes the final state after `finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from launchdeck.contracts.messages import (
    GenerationCall,
    GenerationItemResult,
    GenerationJobSpec,
    GenerationWorkItem,
)
from launchdeck.contracts.statuses import GenerationStatus
from launchdeck.generator.checkpoint import Checkpoint
from launchdeck.generator.limits import AdaptiveLimiter, RateLimiter, paced, with_retries
from launchdeck.generator.providers import (
    ChatClient,
    ChatRequest,
    ChatResult,
    PermanentError,
    TransientError,
)
from launchdeck.generator.settler import SETTLE_BATCH, SETTLE_INTERVAL_S, Settler
from launchdeck.libs import prompts
from launchdeck.libs.generation.budget import Budget, Reservation, Usage
from launchdeck.libs.generation.estimate import item_estimate, outputs_used
from launchdeck.libs.generation.fingerprint import fingerprint
from launchdeck.libs.generation.pricing import ZERO, Price, cost, usd_text
from launchdeck.libs.generation.progress import ProgressSnapshot, ProgressTracker
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# Permanent errors that say every call of the job would fail: a bad key, no access, no model.
JOB_FATAL_STATUSES = frozenset({401, 403, 404})
# How long a shutdown waits to store the items that finished before handing the job back.
SHUTDOWN_SETTLE_S = 3.0

ProgressCallback = Callable[[ProgressSnapshot], Awaitable[None]]


@dataclass(frozen=True)
class JobOutcome:
    status: GenerationStatus
    error: str | None = None


@dataclass(frozen=True)
class ExecutorOptions:
    retry_base_s: float = 5.0
    attempts: int = 3
    claim_limit: int = 256
    progress_interval_s: float = 0.25
    settle_interval_s: float = SETTLE_INTERVAL_S
    settle_batch: int = SETTLE_BATCH
    fail_fast_items: int = 5


class _Halted(Exception):
    """No new call may start (cancelled, the job failed, or no budget for this item)."""


@dataclass
class _Item:
    """What one item has used and produced so far."""

    index: int
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = ZERO
    outputs: dict[str, Any] = field(default_factory=dict)
    calls: list[GenerationCall] = field(default_factory=list)

    def paid(self, result: ChatResult, price: Price) -> None:
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out
        self.cost_usd += cost(result.tokens_in, result.tokens_out, price)

    def result(self, error: str | None = None) -> GenerationItemResult:
        return GenerationItemResult(
            index=self.index,
            status="failed" if error is not None else "done",
            outputs=self.outputs if error is None else {},
            error=error,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=usd_text(self.cost_usd),
            cached=error is None and bool(self.calls) and all(c.cached for c in self.calls),
            attempts=self.attempts,
            calls=self.calls,
        )


@dataclass(frozen=True)
class _Finished:
    result: GenerationItemResult
    permanent: str | None = None  # the permanent error's reason, when that is what failed it


def job_price(spec: GenerationJobSpec) -> Price:
    return Price(Decimal(spec.price_input_per_mtok), Decimal(spec.price_output_per_mtok))


def job_budget(spec: GenerationJobSpec) -> Budget:
    """The job's budget, starting from what it spent before (a resumed job)."""
    spent = Usage(spec.tokens_in + spec.tokens_out, Decimal(spec.cost_usd))
    return Budget(budget_usd=spec.budget_usd, budget_tokens=spec.budget_tokens, spent=spent)


async def run_job(
    spec: GenerationJobSpec,
    checkpoint: Checkpoint,
    client: ChatClient,
    *,
    cancel: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
    on_activity: Callable[[], None] = lambda: None,
    options: ExecutorOptions = ExecutorOptions(),
    clock: Callable[[], float] = time.monotonic,
) -> JobOutcome:
    """Run `spec`'s pending items until none is left or the job stops; the outcome is the
    status to `finish` the job with. `on_activity` is called whenever the job gets somewhere
    (a call answered, a batch settled): the caller's watchdog. Errors of the checkpoint
    propagate (the attempt fails and is redelivered); cancelling the task stores what finished
    (for up to `SHUTDOWN_SETTLE_S`) and abandons the rest."""
    run = _JobRun(
        spec,
        checkpoint,
        client,
        cancel or asyncio.Event(),
        options,
        clock,
        on_progress,
        on_activity,
    )
    return await run.run()


class _JobRun:
    def __init__(
        self,
        spec: GenerationJobSpec,
        checkpoint: Checkpoint,
        client: ChatClient,
        cancel: asyncio.Event,
        options: ExecutorOptions,
        clock: Callable[[], float],
        on_progress: ProgressCallback | None,
        on_activity: Callable[[], None],
    ) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.client = client
        self.cancel = cancel
        self.options = options
        self.clock = clock
        self.steps = [
            prompts.Step(name=s.name, prompt=s.prompt, output=s.output, schema=s.schema)
            for s in spec.steps
        ]
        self.price = job_price(spec)
        self.outputs_used = outputs_used([(s.name, s.prompt) for s in self.steps])
        self.budget = job_budget(spec)
        self.slots = asyncio.Semaphore(max(1, spec.concurrency))
        self.limiter = AdaptiveLimiter(max(1, spec.concurrency))
        self.rate = RateLimiter(spec.requests_per_minute) if spec.requests_per_minute else None
        self.tracker = ProgressTracker(
            spec.total,
            started_at=clock(),
            done=spec.done,
            failed=spec.failed,
            tokens_in=spec.tokens_in,
            tokens_out=spec.tokens_out,
            cost_usd=Decimal(spec.cost_usd),
        )
        self.stop_claiming = asyncio.Event()
        self.no_calls = asyncio.Event()
        self.status: GenerationStatus | None = None
        self.error: str | None = None
        self.first_failures: list[str | None] = []
        self.crash: BaseException | None = None
        self.on_progress = on_progress
        self.on_activity = on_activity
        self.settler = Settler(
            checkpoint,
            on_cancelled=cancel.set,
            on_settled=on_activity,
            on_error=self._settle_failed,
            interval_s=options.settle_interval_s,
            max_batch=options.settle_batch,
        )

    # --- the job --------------------------------------------------------------------------

    async def run(self) -> JobOutcome:
        self.settler.start()
        helpers = [
            asyncio.create_task(self._tick(), name="generation-progress"),
            asyncio.create_task(self._watch_cancel(), name="generation-cancel"),
        ]
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._dispatch(tasks)
            if tasks:
                await asyncio.wait(set(tasks))
            await self.settler.close()
        except BaseException:
            # A shutdown (or a crash): abandon what runs, store what finished, hand back.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.settler.close()), SHUTDOWN_SETTLE_S)
            self.settler.abort()
            raise
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        if self.crash is not None:
            raise self.crash
        return JobOutcome(self.status or "succeeded", self.error)

    async def _dispatch(self, tasks: set[asyncio.Task[None]]) -> None:
        after = -1
        while not self._claiming_stopped():
            reply = await self.checkpoint.claim(after, self.options.claim_limit)
            self.on_activity()
            if reply.status == "cancelled":
                self.cancel.set()
            if not reply.items or self._claiming_stopped():
                return
            for item in reply.items:
                await self.slots.acquire()
                if self._claiming_stopped():
                    self.slots.release()
                    return
                task = asyncio.create_task(self._run_item(item))
                tasks.add(task)
                task.add_done_callback(self._item_done(tasks))
            after = reply.items[-1].index

    def _claiming_stopped(self) -> bool:
        if self.cancel.is_set():
            self.halt("cancelled", None, calls=True)
        return self.stop_claiming.is_set()

    def _item_done(self, tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None and self.crash is None:
                self.crash = task.exception()
                self.halt("failed", "internal error", calls=True)

        return done

    def halt(self, status: GenerationStatus, error: str | None, *, calls: bool) -> None:
        """Stop claiming; with `calls`, no call may start either. The first reason stands."""
        if self.status is None:
            self.status, self.error = status, error
            log.info("generation_job_stopping", job_id=self.spec.job_id, status=status, error=error)
        self.stop_claiming.set()
        if calls:
            self.no_calls.set()

    async def _watch_cancel(self) -> None:
        await self.cancel.wait()
        self.halt("cancelled", None, calls=True)

    def _settle_failed(self, error: BaseException) -> None:
        if self.crash is None:
            self.crash = error
        self.halt("failed", "the results could not be stored", calls=True)

    # --- progress -------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await self._emit()
            await asyncio.sleep(self.options.progress_interval_s)

    async def _emit(self) -> None:
        now = self.clock()
        if self.on_progress is not None and self.tracker.should_emit(now):
            with contextlib.suppress(Exception):
                await self.on_progress(self.tracker.snapshot(now))

    # --- one item -------------------------------------------------------------------------

    async def _run_item(self, item: GenerationWorkItem) -> None:
        try:
            finished = await self._item(item)
        except _Halted:
            return  # stays pending: resumed (or counted as remaining) later
        finally:
            self.slots.release()
        result = finished.result
        self.settler.add(result)
        self.tracker.record(
            "done" if result.status == "done" else "failed",
            now=self.clock(),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=Decimal(result.cost_usd),
        )
        self._fail_fast(finished)
        await self._emit()

    def _fail_fast(self, finished: _Finished) -> None:
        """The first items of this run all failing with one permanent reason fail the job."""
        if len(self.first_failures) >= self.options.fail_fast_items:
            return
        self.first_failures.append(finished.permanent)
        reasons = set(self.first_failures)
        if len(self.first_failures) == self.options.fail_fast_items and len(reasons) == 1:
            reason = reasons.pop()
            if reason is not None:
                self.halt("failed", f"every item fails: {reason}", calls=True)

    def _estimate(self, variables: Mapping[str, Any]) -> tuple[str, Usage]:
        """The first step's prompt (RenderError if it does not render) and what the whole item
        may cost (`libs.generation.estimate`, the dry run's rule): later steps rendered with
        placeholders for the outputs they use (or, when that fails, their template text)."""
        try:
            texts = [r.prompt for r in prompts.render_steps(self.steps, variables)]
        except prompts.RenderError:
            first = prompts.render_steps(self.steps[:1], variables)[0].prompt  # or its error
            texts = [first, *(step.prompt for step in self.steps[1:])]
        estimate = item_estimate(texts, self.outputs_used, self.spec.max_tokens, self.price)
        return texts[0], Usage(estimate.tokens, estimate.usd)

    async def _item(self, work: GenerationWorkItem) -> _Finished:
        item = _Item(work.index)
        try:
            first, estimate = self._estimate(work.variables)
        except prompts.RenderError as exc:
            return _Finished(item.result(str(exc)))
        reservation: Reservation | None = None
        try:
            for k, step in enumerate(self.steps):
                if k == 0:
                    prompt = first
                else:
                    try:
                        rendered = prompts.render_steps(
                            self.steps[: k + 1], work.variables, item.outputs
                        )
                    except prompts.RenderError as exc:
                        return _Finished(item.result(str(exc)))
                    prompt = rendered[-1].prompt
                request = self._request(step, prompt)
                key = self._fingerprint(step, request)
                if key is not None and await self._cached(item, step, key):
                    continue
                if reservation is None:
                    reservation = self.budget.reserve(estimate)
                    if reservation is None:
                        self.halt("budget_exceeded", None, calls=False)
                        raise _Halted
                content, value = await self._call(item, step, request)
                item.calls.append(
                    GenerationCall(
                        step=step.name,
                        fingerprint=key,
                        content=content.content,
                        tokens_in=content.tokens_in,
                        tokens_out=content.tokens_out,
                    )
                )
                item.outputs[step.name] = value
        except PermanentError as exc:
            if exc.status in JOB_FATAL_STATUSES:
                self.halt("failed", exc.reason, calls=True)
            return _Finished(item.result(f"step {step.name!r}: {exc.reason}"), exc.reason)
        except TransientError as exc:
            return _Finished(item.result(f"step {step.name!r}: {exc.reason}"))
        finally:
            if reservation is not None:
                actual = Usage(item.tokens_in + item.tokens_out, item.cost_usd)
                self.budget.settle(reservation, actual)
        return _Finished(item.result())

    def _request(self, step: prompts.Step, prompt: str) -> ChatRequest:
        return ChatRequest(
            model=self.spec.model,
            messages=[_user(prompt)],
            temperature=self.spec.temperature,
            max_tokens=self.spec.max_tokens,
            seed=self.spec.seed,
            options=self.spec.options,
            json_output=step.output == "json",
        )

    def _fingerprint(self, step: prompts.Step, request: ChatRequest) -> str | None:
        if not self.spec.cache:
            return None
        return fingerprint(
            provider=self.spec.provider,
            model=request.model,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            seed=request.seed,
            options=request.options,
            json_output=request.json_output,
            json_schema=step.schema,
        )

    async def _cached(self, item: _Item, step: prompts.Step, key: str) -> bool:
        """Serve the step from the response cache, if it holds a usable answer."""
        hit = await self.checkpoint.cache_lookup(key)
        if hit is None:
            return False
        try:
            value = self._output(step, hit.content)
        except TransientError:
            return False  # an answer stored before the schema changed: call again
        item.calls.append(
            GenerationCall(step=step.name, fingerprint=key, content=hit.content, cached=True)
        )
        item.outputs[step.name] = value
        return True

    def _output(self, step: prompts.Step, content: str) -> Any:
        """A text step's output is its content; a json step's the parsed value, which must fit
        the step's schema (TransientError otherwise: the model may do better next time)."""
        if step.output != "json":
            return content
        try:
            value = prompts.parse_json_output(content)
        except ValueError:
            raise TransientError("the output is not JSON") from None
        if step.schema is not None:
            errors = prompts.validate_output(step.schema, value)
            if errors:
                raise TransientError("the output does not match the schema: " + "; ".join(errors))
        return value

    async def _call(
        self, item: _Item, step: prompts.Step, request: ChatRequest
    ) -> tuple[ChatResult, Any]:
        async def chat() -> ChatResult:
            if self._calls_stopped():  # checked again after waiting for a slot and a token
                raise _Halted
            item.attempts += 1
            try:
                return await self.client.chat(request)
            finally:
                self.on_activity()

        async def attempt() -> tuple[ChatResult, Any]:
            if self._calls_stopped():
                raise _Halted
            result = await self.limiter.run(lambda: paced(self.rate, chat))
            item.paid(result, self.price)
            return result, self._output(step, result.content)

        return await with_retries(
            attempt,
            attempts=self.options.attempts,
            base_s=self.options.retry_base_s,
            sleep=self._backoff,
        )

    def _calls_stopped(self) -> bool:
        # The cancel event itself, not only its watcher's effect: a call about to start in
        # the same turn of the event loop as the cancel does not start.
        return self.no_calls.is_set() or self.cancel.is_set()

    async def _backoff(self, delay_s: float) -> None:
        """A retry's wait, cut short when calls stop (the next attempt then halts)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.no_calls.wait(), delay_s)


def _user(prompt: str) -> dict[str, str]:
    return {"role": "user", "content": prompt}
