"""`launchdeck generate` and `launchdeck generations publish` as users run them, as processes,
against the whole platform (the generator calling the fake LLM over real HTTP): a YAML spec with
an uploaded rows file is followed live to `succeeded` (exit 0), then published and followed
until the site is live at the project's URL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.e2e.support import Api, Platform, create_project, launchdeck
from tests.fake_llm import FakeLLM, running_fake_llm
from tests.support import GitRepoFactory

TEMPLATE = {
    "name": "cli-pages",
    "steps": [
        {
            "name": "outline",
            "output": "json",
            "schema": {"type": "object", "required": ["answer"]},
            "prompt": "Outline {{ service }} of {{ business }} in {{ area }}.",
        },
        {"name": "page", "prompt": "Page {{ steps.outline.output.answer }} for {{ area }}."},
    ],
}
ROWS = [
    {"business": "Acme", "service": "Repair", "area": "Austin"},
    {"business": "Acme", "service": "Repair", "area": "Dallas"},
    {"business": "Bolt", "service": "Wiring", "area": "Austin"},
    {"business": "Bolt", "service": "Wiring", "area": "Dallas"},
]


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with running_fake_llm() as fake:
        yield fake


async def test_generate_follows_to_success_and_publish_goes_live(
    api: Api,
    platform: Platform,
    fake_llm: FakeLLM,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """generate SPEC: one progress line per update (not a TTY), the final line says
    `succeeded` with the counts, exit 0, each item called once per step; publish: the
    deployment is followed until live and the URL printed; the edge serves the index."""
    await create_project(api, "cli-gen", make_git_repo({"README.md": "generated pages"}))
    (tmp_path / "template.json").write_text(json.dumps(TEMPLATE))
    made = await launchdeck(platform, "templates", "create", str(tmp_path / "template.json"))
    assert made.code == 0, made
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    (tmp_path / "spec.yaml").write_text(
        "project: cli-gen\n"
        "template: cli-pages\n"
        "rows_file: rows.jsonl\n"
        "group_by: business\n"
        "model: {provider: ollama, name: llama3.2}\n"
        "parameters: {seed: 7}\n"
        "limits: {concurrency: 2, budget_usd: 1}\n"
    )

    run = await launchdeck(
        platform, "generate", str(tmp_path / "spec.yaml"), "--base-url", fake_llm.url
    )
    assert run.code == 0, run
    first = re.fullmatch(
        r"Generation ([0-9a-f-]{36}) queued: 4 items, template cli-pages v1, ollama llama3.2",
        run.out[0],
    )
    assert first, run.out
    job_id = first[1]
    assert re.fullmatch(
        rf"Generation {job_id} succeeded: 4 of 4 done, 0 failed; [\d,]+ tokens; \$0(\.0+)?",
        run.out[-2],
    ), run.out
    assert run.out[-1] == f"Export: launchdeck generations export {job_id} --format jsonl"
    assert any(line.startswith("succeeded: 4/4 done, 0 failed") for line in run.out), run.out
    assert sum(fake_llm.calls.values()) == 8  # two steps per item, none twice
    assert fake_llm.calls["Outline Repair of Acme in Dallas."] == 1

    shown = await launchdeck(platform, "generations", "show", job_id, "--items", "4")
    assert shown.code == 0, shown
    assert shown.out[0] == f"Generation {job_id}: succeeded"

    published = await launchdeck(platform, "generations", "publish", job_id)
    assert published.code == 0, published
    assert published.out[0].startswith("Published 4 pages as build ")
    url = f"http://cli-gen.localhost:{platform.edge_port}/"
    assert published.out[-1] == f"Live at {url}"
    status, index = await api.edge_get("cli-gen", "/")
    assert status == 200, index
    assert 'href="acme/"' in index
