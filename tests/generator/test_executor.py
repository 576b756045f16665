"""The executor against the fake LLM over real HTTP, with the job's checkpoint in memory
(tests/generator/memory_checkpoint.py): what is called, how often, and what is settled."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec

from launchdeck.contracts.messages import GenerationJobSpec, GenerationStepSpec
from launchdeck.generator.executor import ExecutorOptions, JobOutcome, run_job
from launchdeck.generator.providers import ChatClient, make_client, open_session
from launchdeck.libs.generation.progress import ProgressSnapshot
from launchdeck.libs.generation.variables import expand_matrix
from tests.fake_llm import FakeLLM, Prompt, default_answer
from tests.generator.memory_checkpoint import MemoryCheckpoint, make_spec
from tests.polling import eventually

FAST = ExecutorOptions(retry_base_s=0.01)
OUTLINE_SCHEMA = {
    "type": "object",
    "required": ["answer"],
    "properties": {"answer": {"type": "string"}},
}
TWO_STEPS = [
    GenerationStepSpec(
        name="outline",
        prompt="Outline a page on {{ service }} in {{ city }}",
        output="json",
        schema=OUTLINE_SCHEMA,
    ),
    GenerationStepSpec(
        name="page", prompt="Write the page for {{ city }} from: {{ steps.outline.output.answer }}"
    ),
]


def topics(n: int) -> list[dict[str, Any]]:
    return [{"topic": f"item {i}"} for i in range(n)]


@asynccontextmanager
async def client_for(
    fake: FakeLLM, spec: GenerationJobSpec, api_key: str | None = None
) -> AsyncIterator[ChatClient]:
    async with open_session(spec.concurrency) as session:
        yield make_client(spec.provider, session, fake.url, api_key=api_key, timeout_s=10)


async def run(
    fake: FakeLLM,
    checkpoint: MemoryCheckpoint,
    *,
    api_key: str | None = None,
    cancel: asyncio.Event | None = None,
    progress: list[tuple[float, ProgressSnapshot]] | None = None,
) -> JobOutcome:
    spec = checkpoint.resumed_spec()

    async def publish(snapshot: ProgressSnapshot) -> None:
        if progress is not None:
            progress.append((time.monotonic(), snapshot))

    async with client_for(fake, spec, api_key) as client:
        outcome = await run_job(
            spec, checkpoint, client, cancel=cancel, on_progress=publish, options=FAST
        )
    await checkpoint.finish(outcome.status, outcome.error)
    return outcome


def prompt_of(i: int) -> str:
    return f"Write about item {i}"


async def test_a_matrix_runs_every_item_once_with_exact_totals(fake_llm: FakeLLM) -> None:
    """A 3 x 4 matrix: 12 items, each prompt called once, each output the model's answer, the
    totals the sum of the provider's usage; results settled in batches, not one by one."""
    items = expand_matrix({"service": ["roofing", "plumbing", "paint"], "city": list("abcd")})
    spec = make_spec(steps=[GenerationStepSpec(name="page", prompt="{{ service }} in {{ city }}")])
    checkpoint = MemoryCheckpoint(spec, items.items)
    outcome = await run(fake_llm, checkpoint)
    assert outcome == JobOutcome("succeeded")
    assert len(fake_llm.calls) == 12
    assert set(fake_llm.calls.values()) == {1}
    for i, variables in enumerate(items.items):
        result = checkpoint.results[i]
        text = f"{variables['service']} in {variables['city']}"
        assert result.status == "done"
        assert result.outputs == {
            "page": default_answer(Prompt("ollama", "llama3", text, False, {}))
        }
        assert (result.tokens_in, result.attempts, result.cached) == (3 + 10, 1, False)
    totals = checkpoint.totals()
    assert (totals.status, totals.done, totals.failed) == ("succeeded", 12, 0)
    assert totals.tokens_in == sum(r.tokens_in for r in checkpoint.results.values())
    assert len(checkpoint.settle_batches) < 12


async def test_two_steps_a_json_outline_feeds_the_page(fake_llm: FakeLLM) -> None:
    """Step 2's prompt uses step 1's parsed JSON; outputs hold the parsed value and the text;
    the JSON step is asked for JSON."""
    checkpoint = MemoryCheckpoint(
        make_spec(steps=TWO_STEPS, max_tokens=200), [{"service": "roofing", "city": "Austin"}]
    )
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    result = checkpoint.results[0]
    outline = result.outputs["outline"]
    assert outline["answer"].startswith("answer ")
    page_prompt = f"Write the page for Austin from: {outline['answer']}"
    assert result.outputs["page"].endswith(page_prompt)
    assert fake_llm.calls[page_prompt] == 1
    assert fake_llm.requests[0]["format"] == "json"
    assert "format" not in fake_llm.requests[1]
    assert [c.step for c in result.calls] == ["outline", "page"]
    assert result.attempts == 2


async def test_a_transient_error_is_retried_then_succeeds(fake_llm: FakeLLM) -> None:
    """The first call of every prompt answers 503: each item is called twice and is done."""
    fake_llm.fail("status", status=503, first=1)
    checkpoint = MemoryCheckpoint(make_spec(), topics(6))
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    assert set(fake_llm.calls.values()) == {2}
    assert {r.status for r in checkpoint.results.values()} == {"done"}
    assert {r.attempts for r in checkpoint.results.values()} == {2}


async def test_invalid_json_is_retried_and_a_schema_mismatch_fails_the_item(
    fake_llm: FakeLLM,
) -> None:
    """Not-JSON once, then JSON: done. JSON that never fits the schema: 3 calls, then the
    item fails with the validation error (and the job goes on)."""
    fake_llm.fail("invalid_json", first=1)

    def answer(prompt: Prompt) -> str:
        if "Bad" in prompt.text:
            return json.dumps({"title": 3})
        return default_answer(prompt)

    fake_llm.answer = answer
    checkpoint = MemoryCheckpoint(
        make_spec(steps=TWO_STEPS[:1]),
        [{"service": "roofing", "city": "Austin"}, {"service": "Bad", "city": "Austin"}],
    )
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    good, bad = checkpoint.results[0], checkpoint.results[1]
    assert (good.status, good.attempts) == ("done", 2)
    assert (bad.status, bad.attempts) == ("failed", 3)
    assert bad.error is not None
    assert "does not match the schema" in bad.error
    assert "'answer' is a required property" in bad.error
    assert bad.tokens_out > 0  # the invalid answers were paid for


async def test_a_bad_key_fails_the_job_fast(fake_llm: FakeLLM) -> None:
    """401 on an OpenAI-compatible server: the job fails with the provider's reason (the key
    redacted) after at most one call per slot; the other items stay pending."""
    fake_llm.api_key = "sk-right"
    spec = make_spec(provider="openai", concurrency=4)
    checkpoint = MemoryCheckpoint(spec, topics(40))
    outcome = await run(fake_llm, checkpoint, api_key="sk-wrong-key")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "HTTP 401" in outcome.error
    assert "sk-wrong-key" not in outcome.error
    assert 1 <= sum(r.attempts for r in checkpoint.results.values()) <= 4
    assert len(checkpoint.pending) >= 36
    assert checkpoint.totals().status == "failed"


async def test_an_unknown_model_fails_the_job_after_a_few_calls(fake_llm: FakeLLM) -> None:
    """404 model not found: the job fails naming it; a few calls, not one per item."""
    fake_llm.models = {"llama3"}
    checkpoint = MemoryCheckpoint(make_spec(model="nope", concurrency=2), topics(30))
    outcome = await run(fake_llm, checkpoint)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert 'model "nope" not found' in outcome.error
    assert fake_llm.total_calls <= 2


async def test_a_400_fails_only_its_item(fake_llm: FakeLLM) -> None:
    """A 400 for one prompt fails that item at once (one call); the others are done."""
    fake_llm.fail("status", status=400, message="context too long", first=None, match="item 3")
    checkpoint = MemoryCheckpoint(make_spec(), topics(8))
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    failed = checkpoint.results[3]
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error == "step 'page': HTTP 400: context too long"
    assert fake_llm.calls[prompt_of(3)] == 1
    assert checkpoint.totals().done == 7


async def test_every_item_failing_the_same_way_fails_the_job(fake_llm: FakeLLM) -> None:
    """The first 5 items all failing with one permanent reason: the job fails with it and the
    remaining items are not called."""
    fake_llm.fail("status", status=400, message="unsupported option", first=None)
    checkpoint = MemoryCheckpoint(make_spec(concurrency=1), topics(50))
    outcome = await run(fake_llm, checkpoint)
    assert outcome.status == "failed"
    assert outcome.error == "every item fails: HTTP 400: unsupported option"
    assert fake_llm.total_calls == 5
    assert len(checkpoint.pending) == 45


async def test_429_halves_the_concurrency(fake_llm: FakeLLM) -> None:
    """Calls start 8 at a time; 429s halve the limit, so once they come no more than 4 calls
    are in flight (seen at the fake when it answers)."""
    fake_llm.latency_s = 0.05
    fake_llm.fail("status", status=429, message="slow down", first=1)
    seen: list[int] = []

    def answer(prompt: Prompt) -> str:
        seen.append(fake_llm.in_flight)
        return default_answer(prompt)

    fake_llm.answer = answer
    checkpoint = MemoryCheckpoint(make_spec(concurrency=8), topics(24))
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    assert fake_llm.max_in_flight == 8
    assert len(seen) == 24
    assert max(seen) <= 4
    assert checkpoint.totals().done == 24


async def test_the_budget_stops_the_job_without_overspending(fake_llm: FakeLLM) -> None:
    """A USD budget with a price: the job ends budget_exceeded, the spend stays within the
    budget (estimates hold), and the items not reached stay pending, never called."""
    spec = make_spec(
        budget_usd="0.004",
        price_input_per_mtok="10",
        price_output_per_mtok="10",
        max_tokens=50,
        concurrency=4,
    )
    checkpoint = MemoryCheckpoint(spec, topics(40))
    outcome = await run(fake_llm, checkpoint)
    assert outcome == JobOutcome("budget_exceeded")
    totals = checkpoint.totals()
    assert totals.status == "budget_exceeded"
    assert Decimal(totals.cost_usd) <= Decimal("0.004")
    assert 0 < totals.done < 40
    assert fake_llm.total_calls == totals.done
    for i in checkpoint.pending:
        assert fake_llm.calls[prompt_of(i)] == 0


async def test_a_token_budget_resumes_from_what_was_spent(fake_llm: FakeLLM) -> None:
    """A resumed job starts from its spent tokens: with the budget already used up, it
    calls nothing and ends budget_exceeded."""
    checkpoint = MemoryCheckpoint(make_spec(budget_tokens=1000), topics(5))
    spec = msgspec.structs.replace(checkpoint.spec, tokens_in=990)
    checkpoint.spec = spec
    outcome = await run(fake_llm, checkpoint)
    assert outcome == JobOutcome("budget_exceeded")
    assert fake_llm.total_calls == 0


async def test_identical_requests_are_served_from_the_cache(fake_llm: FakeLLM) -> None:
    """A second job with the same seed and prompts makes no call: every item cached, cost
    and tokens 0. With the cache off, it calls again."""
    cache: dict[str, Any] = {}
    spec = make_spec(steps=TWO_STEPS, seed=7, price_input_per_mtok="1", price_output_per_mtok="1")
    items = [{"service": "roofing", "city": c} for c in "abc"]
    first = MemoryCheckpoint(spec, items, cache)
    assert await run(fake_llm, first) == JobOutcome("succeeded")
    assert fake_llm.total_calls == 6
    assert len(cache) == 6
    assert Decimal(first.totals().cost_usd) > 0

    second = MemoryCheckpoint(msgspec.structs.replace(spec, job_id="job-2"), items, cache)
    assert await run(fake_llm, second) == JobOutcome("succeeded")
    assert fake_llm.total_calls == 6
    for index, result in second.results.items():
        assert result.cached
        assert result.status == "done"
        assert (result.tokens_in, result.tokens_out, result.cost_usd, result.attempts) == (
            0,
            0,
            "0",
            0,
        )
        assert result.outputs == first.results[index].outputs
        assert all(call.cached for call in result.calls)
    assert second.totals().cost_usd == "0"

    third = MemoryCheckpoint(
        msgspec.structs.replace(spec, job_id="job-3", cache=False), items, cache
    )
    assert await run(fake_llm, third) == JobOutcome("succeeded")
    assert fake_llm.total_calls == 12


async def test_no_seed_means_no_cache(fake_llm: FakeLLM) -> None:
    """Sampling without a seed is not cacheable: nothing is looked up."""
    checkpoint = MemoryCheckpoint(make_spec(), topics(3))
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    assert checkpoint.lookups == 0
    assert checkpoint.cache == {}


async def test_cancel_starts_no_new_call_and_settles_those_in_flight(fake_llm: FakeLLM) -> None:
    """Cancelled while 4 calls are in flight: those finish and their items are settled; no
    other call starts; the job ends cancelled with the rest pending."""
    fake_llm.latency_s = 0.3
    checkpoint = MemoryCheckpoint(make_spec(concurrency=4), topics(20))
    cancel = asyncio.Event()
    job = asyncio.create_task(run(fake_llm, checkpoint, cancel=cancel))
    await eventually("4 calls in flight", lambda: fake_llm.in_flight == 4 or None)
    cancel.set()
    assert await job == JobOutcome("cancelled")
    assert fake_llm.total_calls == 4
    assert len(checkpoint.results) == 4
    assert {r.status for r in checkpoint.results.values()} == {"done"}
    assert len(checkpoint.pending) == 16


async def test_a_cancel_seen_in_a_settle_reply_stops_the_job(fake_llm: FakeLLM) -> None:
    """The API cancelled the job (its row says so): the next settle reply stops it."""
    fake_llm.latency_s = 0.05
    checkpoint = MemoryCheckpoint(make_spec(concurrency=2), topics(200))
    job = asyncio.create_task(run(fake_llm, checkpoint))
    await eventually("some items settled", lambda: len(checkpoint.results) >= 4 or None)
    checkpoint.cancel()
    assert await job == JobOutcome("cancelled")
    assert len(checkpoint.pending) > 150


async def test_a_resumed_job_calls_only_pending_items(fake_llm: FakeLLM) -> None:
    """Items already settled are not claimed again: their prompts are never called."""
    checkpoint = MemoryCheckpoint(make_spec(), topics(10))
    first = MemoryCheckpoint(make_spec(), topics(10)[:4])
    await run(fake_llm, first)
    checkpoint.results.update(first.results)
    fake_llm.reset()
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    assert sorted(fake_llm.calls) == sorted(prompt_of(i) for i in range(4, 10))
    assert checkpoint.totals().done == 10


async def test_a_template_error_fails_the_item_naming_the_step(fake_llm: FakeLLM) -> None:
    """An undefined variable in one item's row: that item fails with the step and message."""
    checkpoint = MemoryCheckpoint(make_spec(), [{"topic": "x"}, {"other": "y"}])
    assert await run(fake_llm, checkpoint) == JobOutcome("succeeded")
    assert checkpoint.results[1].status == "failed"
    assert checkpoint.results[1].error == "step 'page', line 1: 'topic' is undefined"
    assert fake_llm.total_calls == 1


async def test_progress_is_throttled_and_ends_final(fake_llm: FakeLLM) -> None:
    """300 fast items: at most ~4 events a second, each at least 0.25 s apart except the
    last, which says every item is done."""
    fake_llm.latency_s = 0.005
    progress: list[tuple[float, ProgressSnapshot]] = []
    checkpoint = MemoryCheckpoint(make_spec(concurrency=8), topics(300))
    started = time.monotonic()
    assert await run(fake_llm, checkpoint, progress=progress) == JobOutcome("succeeded")
    elapsed = time.monotonic() - started
    assert len(progress) <= elapsed * 4 + 2
    times = [at for at, _ in progress]
    assert all(b - a >= 0.24 for a, b in itertools.pairwise(times[:-1]))
    last = progress[-1][1]
    assert (last.done, last.failed, last.total, last.eta_s) == (300, 0, 300, 0.0)
    assert last.tokens_in == checkpoint.totals().tokens_in
    assert max(checkpoint.settle_batches) <= 128
    assert len(checkpoint.settle_batches) < 300 / 4
