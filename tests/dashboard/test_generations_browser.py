"""Generation jobs in the dashboard, in a real browser against the whole platform (the generator
calling the fake LLM over HTTP): start a job from a template through the form, watch its
progress reach done without reloading, the rate chart and the cost-per-day chart drawn (uPlot
canvases), the items with their outputs, the JSONL export downloaded through the dashboard;
a read-only token sees no write control. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.e2e.support import Api, Platform, create_project
from tests.fake_llm import FakeLLM, running_fake_llm
from tests.support import GitRepoFactory

pytestmark = pytest.mark.timeout(300)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
ITEMS = 30
ROWS = [{"service": s, "area": a} for s in ("plumbing", "heating", "roofing") for a in range(10)]


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with running_fake_llm() as fake:
        yield fake


async def sign_in(page: Page, token: str) -> None:
    await page.goto("/sign-in")
    form = page.get_by_test_id("sign-in-form")
    await form.locator("input[name=token]").fill(token)
    await form.get_by_test_id("sign-in").click()
    await page.wait_for_url(re.compile(r"/projects$"))


async def test_a_job_started_from_the_form_runs_live_with_charts_items_and_export(
    browser: Browser,
    platform: Platform,
    api: Api,
    fake_llm: FakeLLM,
    make_git_repo: GitRepoFactory,
    screenshots: Path,
) -> None:
    assert len(ROWS) == ITEMS
    fake_llm.latency_s = 0.3  # 30 items two at a time: ~5 s, long enough to watch
    await create_project(api, "gen-pages", make_git_repo({"index.html": "<h1>x</h1>"}))
    status, template = await api.call(
        "POST",
        "/templates",
        {
            "name": "area-pages",
            "steps": [{"name": "page", "prompt": "Write {{ service }} in area {{ area }}"}],
        },
    )
    assert status == 201, template

    context = await browser.new_context(
        base_url=platform.api_url, viewport=DESKTOP, accept_downloads=True
    )
    page = await context.new_page()
    await sign_in(page, platform.token)
    await page.goto("/projects/gen-pages")
    await page.get_by_role("link", name="Generation jobs").click()
    await page.wait_for_url(re.compile(r"/projects/gen-pages/generations$"))
    await expect(page.get_by_test_id("generations")).to_contain_text("No generation jobs yet")

    form = page.get_by_test_id("new-generation")
    assert await form.get_attribute("data-write") is not None
    await form.locator("select[name=template]").select_option("area-pages")
    await form.locator("select[name=provider]").select_option("ollama")
    await form.locator("input[name=model]").fill("llama3")
    await form.locator("input[name=base_url]").fill(fake_llm.url)
    await form.locator("input[name=concurrency]").fill("2")
    await form.locator("input[name=price_in]").fill("1000")
    await form.locator("input[name=price_out]").fill("2000")
    await form.locator("input[name=budget_usd]").fill("50")
    await form.locator("textarea[name=rows]").fill(json.dumps(ROWS))
    async with page.expect_navigation(url=re.compile(r"/generations/[0-9a-f-]{36}$")) as nav:
        await form.get_by_test_id("create-generation").click()
    first_render = await (await nav.value).text()  # type: ignore[union-attr]
    job_id = page.url.rsplit("/", 1)[1]
    # The page was served before the job finished: what follows arrives live.
    assert re.search(
        r'data-testid="generation-status" class="status status-(queued|running)"', first_render
    )
    await page.evaluate("window.__launchdeckTestMark = 'still here'")

    progress = page.get_by_test_id("progress")
    await expect(progress.locator('[data-role="total"]')).to_have_text(str(ITEMS))
    await expect(page.get_by_test_id("generation-status")).to_have_text("succeeded", timeout=60_000)
    await expect(progress.locator('[data-role="done"]')).to_have_text(str(ITEMS))
    assert await page.evaluate("window.__launchdeckTestMark") == "still here", "page reloaded"
    _, job = await api.call("GET", f"/generations/{job_id}")
    assert (job["status"], job["done"]) == ("succeeded", ITEMS)
    assert float(job["cost_usd"]) > 0
    await expect(progress.locator('[data-role="cost"]')).to_have_text(job["cost_usd"])
    await expect(progress.locator('[data-role="tokens_in"]')).to_have_text(str(job["tokens_in"]))
    await expect(page.get_by_test_id("cancel-generation")).to_have_count(0)

    # The chart of items/s, tokens and cost, and the items with their outputs (refreshed live).
    await expect(page.get_by_test_id("rate-chart").locator("canvas")).to_have_count(1)
    await expect(page.get_by_test_id("rate-chart")).to_contain_text("Items/s")
    rows = page.get_by_test_id("items").get_by_test_id("item-row")
    await expect(rows.first).to_have_attribute("data-status", "done")
    await expect(rows.first.get_by_test_id("item-output")).to_contain_text(
        "to: Write plumbing in area 0"
    )
    await expect(rows).to_have_count(25)  # a page; the rest one link away
    await expect(page.get_by_test_id("items-next")).to_be_visible()
    await page.screenshot(path=str(screenshots / "generation-1280.png"), full_page=True)

    # Export: the JSONL streamed by the dashboard with the session's token.
    async with page.expect_download() as download_info:
        await page.get_by_test_id("export-jsonl").click()
    download = await download_info.value
    assert download.suggested_filename == f"generation-{job_id}.jsonl"
    saved = Path(await download.path())
    lines = [json.loads(line) for line in (await asyncio.to_thread(saved.read_text)).splitlines()]
    assert [line["index"] for line in lines] == list(range(ITEMS))
    assert all(line["status"] == "done" and line["outputs"]["page"] for line in lines)

    await page.set_viewport_size(PHONE)
    await page.reload()
    await expect(page.get_by_test_id("rate-chart").locator("canvas")).to_have_count(1)
    width = await page.evaluate("document.documentElement.scrollWidth")
    await page.screenshot(path=str(screenshots / "generation-360.png"), full_page=True)
    assert width <= PHONE["width"], f"the job's page is {width}px wide on a 360px screen"
    await page.set_viewport_size(DESKTOP)

    # The project's jobs: the row, and today's cost in the per-day chart.
    await page.goto("/projects/gen-pages/generations")
    row = page.locator(f'[data-testid="generation-row"][data-generation="{job_id}"]')
    await expect(row).to_have_attribute("data-status", "succeeded")
    await expect(row).to_contain_text(f"{ITEMS}/{ITEMS}")
    chart = page.get_by_test_id("cost-chart")
    await expect(chart.locator("canvas")).to_have_count(1)
    series = json.loads(await chart.get_attribute("data-series") or "{}")
    assert series["cost"][-1] == pytest.approx(float(job["cost_usd"]))
    assert series["items"][-1] == ITEMS
    await page.screenshot(path=str(screenshots / "generations-1280.png"), full_page=True)

    # The rows as an uploaded CSV file (the API's multipart create); JSON and a file together
    # are refused with a readable error.
    csv_file = {
        "name": "areas.csv",
        "mimeType": "text/csv",
        "buffer": b"service,area\nglazing,Lyon\nglazing,Nantes\npaving,Lille\n",
    }
    form = page.get_by_test_id("new-generation")
    await form.locator("select[name=template]").select_option("area-pages")
    await form.locator("input[name=model]").fill("llama3")
    await form.locator("input[name=base_url]").fill(fake_llm.url)
    await form.locator("textarea[name=rows]").fill(json.dumps(ROWS[:1]))
    await form.get_by_test_id("rows-file").set_input_files(csv_file)  # type: ignore[arg-type]
    await form.get_by_test_id("create-generation").click()
    await expect(page.get_by_test_id("error")).to_contain_text("as JSON or as a file, not both")
    form = page.get_by_test_id("new-generation")
    await expect(form.locator("textarea[name=rows]")).to_have_value(json.dumps(ROWS[:1]))
    await form.locator("textarea[name=rows]").fill("")
    await form.get_by_test_id("rows-file").set_input_files(csv_file)  # type: ignore[arg-type]
    async with page.expect_navigation(url=re.compile(r"/generations/[0-9a-f-]{36}$")):
        await form.get_by_test_id("create-generation").click()
    uploaded_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_test_id("progress").locator('[data-role="total"]')).to_have_text("3")
    await expect(page.get_by_test_id("generation-status")).to_have_text("succeeded", timeout=60_000)
    _, items = await api.call("GET", f"/generations/{uploaded_id}/items")
    assert [i["variables"] for i in items["items"]] == [
        {"service": "glazing", "area": "Lyon"},
        {"service": "glazing", "area": "Nantes"},
        {"service": "paving", "area": "Lille"},
    ]
    await context.close()


async def test_a_bad_form_shows_the_error_and_a_read_only_token_sees_no_write_control(
    browser: Browser, platform: Platform, api: Api, make_git_repo: GitRepoFactory
) -> None:
    """Rows that are not JSON objects: the form again with the error and what was typed. A
    token with only `read` on the project: the pages and charts, no `[data-write]`, and a job
    it posts anyway (with a valid CSRF token) refused by the API."""
    await create_project(api, "gen-viewer", make_git_repo({"index.html": "<h1>x</h1>"}))
    status, _ = await api.call(
        "POST", "/templates", {"name": "viewer-pages", "steps": [{"name": "p", "prompt": "Hi"}]}
    )
    assert status == 201
    context = await browser.new_context(base_url=platform.api_url, viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, platform.token)
    await page.goto("/projects/gen-viewer/generations")
    form = page.get_by_test_id("new-generation")
    await form.locator("select[name=template]").select_option("viewer-pages")
    await form.locator("input[name=model]").fill("llama3")
    await form.locator("textarea[name=rows]").fill("[1, 2]")
    await form.get_by_test_id("create-generation").click()
    await expect(page.get_by_test_id("error")).to_contain_text("rows")
    await expect(form.locator("textarea[name=rows]")).to_have_value("[1, 2]")
    await expect(form.locator("input[name=model]")).to_have_value("llama3")
    await context.close()

    status, minted = await api.call(
        "POST", "/tokens", {"name": "viewer", "scopes": ["read"], "project_id": "gen-viewer"}
    )
    assert status == 201, minted
    status, job = await api.call(
        "POST",
        "/projects/gen-viewer/generations",
        {
            "template": "viewer-pages",
            "model": {"provider": "ollama", "name": "llama3", "base_url": "http://127.0.0.1:9"},
            "rows": [{"n": 1}],
        },
    )
    assert status == 202, job
    context = await browser.new_context(base_url=platform.api_url, viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, minted["token"])
    for path in ("/projects/gen-viewer/generations", f"/generations/{job['id']}"):
        await page.goto(path)
        await expect(page.get_by_test_id("nav-projects")).to_be_visible()
        assert await page.locator("[data-write]").count() == 0, path
    await expect(page.get_by_test_id("rate-chart").locator("canvas")).to_have_count(1)
    csrf = await page.get_by_test_id("sign-out").locator("input[name=csrf_token]").input_value()
    response = await context.request.post(
        "/projects/gen-viewer/generations",
        form={
            "csrf_token": csrf,
            "template": "viewer-pages",
            "model": "llama3",
            "rows": '[{"n": 2}]',
        },
        headers={"Origin": platform.api_url},
        max_redirects=0,
    )
    assert response.status == 403, await response.text()
    assert 'data-testid="error"' in await response.text()
    _, jobs = await api.call("GET", "/projects/gen-viewer/generations")
    assert len(jobs["items"]) == 1
    await context.close()
