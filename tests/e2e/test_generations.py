"""Generation jobs end to end, every service a process with its own NATS user: a job of 200
items runs in the generator against the fake LLM (over real HTTP), the generator is SIGKILLed
mid-job and started again, and the job completes from its checkpoint: no item done before the
kill is called again, and the final counts are exact."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.support import Api, Platform, create_project, launch_platform
from tests.fake_llm import FakeLLM, running_fake_llm
from tests.polling import eventually
from tests.support import GitRepoFactory

ITEMS = 200


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, nats_url: str, nats_log: Path
) -> AsyncIterator[Platform]:
    """A short AckWait, so a killed generator's job comes back within seconds; short retries."""
    extra = {"LAUNCHDECK_GENERATION_ACK_WAIT_S": "3", "LAUNCHDECK_GENERATION_RETRY_BASE_S": "0.05"}
    async with launch_platform(
        tmp_path_factory.mktemp("platform"), database_url, nats_url, extra, nats_logs=[nats_log]
    ) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with running_fake_llm() as fake:
        yield fake


async def job_of(api: Api, job_id: str) -> dict[str, Any]:
    status, job = await api.call("GET", f"/generations/{job_id}")
    assert status == 200, job
    return dict(job)


async def items_of(api: Api, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = "limit=200" + (f"&status={status}" if status else "")
        query += f"&cursor={cursor}" if cursor else ""
        code, page = await api.call("GET", f"/generations/{job_id}/items?{query}")
        assert code == 200, page
        found += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def test_a_job_survives_a_sigkilled_generator_without_calling_an_item_twice(
    api: Api, platform: Platform, fake_llm: FakeLLM, make_git_repo: GitRepoFactory
) -> None:
    """200 items at 4 at a time; SIGKILL the generator once 40 are done, start it again: the
    job is redelivered (attempt 2) and succeeds with done == 200; every item stored as done
    before the kill was called exactly once, no prompt more than twice; the job's tokens are
    the sum of its items'."""
    fake_llm.latency_s = 0.1
    await create_project(api, "gen-resume", make_git_repo({"index.html": "<h1>x</h1>"}))
    status, template = await api.call(
        "POST",
        "/templates",
        {"name": "resume-pages", "steps": [{"name": "page", "prompt": "Write page {{ n }}"}]},
    )
    assert status == 201, template
    status, job = await api.call(
        "POST",
        "/projects/gen-resume/generations",
        {
            "template": "resume-pages",
            "model": {"provider": "ollama", "name": "llama3", "base_url": fake_llm.url},
            "variables": {"n": list(range(ITEMS))},
            "limits": {"concurrency": 4},
        },
    )
    assert status == 202, job
    assert job["total"] == ITEMS
    job_id = job["id"]

    async def some_done() -> dict[str, Any] | None:
        current = await job_of(api, job_id)
        assert current["status"] in ("queued", "running"), current
        return current if current["done"] >= 40 else None

    started: dict[str, Any] | None = await eventually("40 items done", some_done, timeout_s=60)
    assert started is not None
    assert started["status"] == "running"
    done_before = await items_of(api, job_id, "done")
    platform.stop("generator", signal.SIGKILL)
    assert len(done_before) >= 40
    assert (await job_of(api, job_id))["done"] < ITEMS, "the job finished before the kill"
    platform.start("generator")

    async def finished() -> dict[str, Any] | None:
        current = await job_of(api, job_id)
        return current if current["status"] not in ("queued", "running") else None

    final: dict[str, Any] | None = await eventually("the job finished", finished, timeout_s=90)
    assert final is not None
    assert (final["status"], final["done"], final["failed"], final["pending"]) == (
        "succeeded",
        ITEMS,
        0,
        0,
    ), final
    assert '"attempt": 2' in platform.logs("generator") or "attempt=2" in platform.logs("generator")

    for item in done_before:
        assert fake_llm.calls[f"Write page {item['variables']['n']}"] == 1, item
    assert all(fake_llm.calls[f"Write page {n}"] in (1, 2) for n in range(ITEMS))
    assert len(fake_llm.calls) == ITEMS
    # Called again: at most the calls in flight at the kill (4) and the results not settled
    # yet (the settler's last 100 ms, ~4 at this pace), with room for a slow machine.
    assert sum(fake_llm.calls.values()) - ITEMS <= 16

    items = await items_of(api, job_id)
    assert len(items) == ITEMS
    assert {i["status"] for i in items} == {"done"}
    assert final["tokens_in"] == sum(i["tokens_in"] for i in items)
    assert final["tokens_out"] == sum(i["tokens_out"] for i in items)
    for item in items:
        n = item["variables"]["n"]
        assert item["outputs"]["page"].endswith(f"to: Write page {n}")
        assert item["tokens_in"] == 3 + 10  # the fake's usage: words of the prompt + 10


async def test_a_cancelled_job_stops_calling_the_model(
    api: Api, platform: Platform, fake_llm: FakeLLM, make_git_repo: GitRepoFactory
) -> None:
    """POST …/cancel mid-job: the generator hears it, starts no new call (those in flight
    finish and are stored), and the job stays `cancelled` with its other items pending."""
    fake_llm.latency_s = 0.2
    await create_project(api, "gen-cancel", make_git_repo({"index.html": "<h1>x</h1>"}))
    status, template = await api.call(
        "POST",
        "/templates",
        {"name": "cancel-pages", "steps": [{"name": "page", "prompt": "Cancel page {{ n }}"}]},
    )
    assert status == 201, template
    status, job = await api.call(
        "POST",
        "/projects/gen-cancel/generations",
        {
            "template": "cancel-pages",
            "model": {"provider": "ollama", "name": "llama3", "base_url": fake_llm.url},
            "variables": {"n": list(range(100))},
            "limits": {"concurrency": 2},
        },
    )
    assert status == 202, job
    await eventually("calls made", lambda: fake_llm.total_calls >= 4 or None, timeout_s=60)
    status, cancelled = await api.call("POST", f"/generations/{job['id']}/cancel")
    assert status == 200, cancelled
    calls_at_cancel = fake_llm.total_calls

    def ended() -> bool:
        return any(
            json.loads(line).get("event") == "generation_job_finished"
            and json.loads(line).get("job_id") == job["id"]
            for line in platform.logs("generator").splitlines()
            if line.startswith("{")
        )

    await eventually("the generator stopped the job", ended, timeout_s=30)
    final = await job_of(api, job["id"])
    assert final["status"] == "cancelled"
    assert fake_llm.total_calls <= calls_at_cancel + 2  # at most those already sent
    assert final["pending"] >= 90
    assert final["done"] == len(await items_of(api, job["id"], "done"))
