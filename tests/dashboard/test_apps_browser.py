"""The apps page in a real browser against the whole platform: a Node app built from a git
repository and deployed; its page shows the production web instance healthy with no restarts
(the deploy-engine's report, through the API), and the app's log lines arrive live — a request
through the edge makes the app print one while the page is open."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.dashboard.test_dashboard_browser import new_context, shoot, sign_in
from tests.deploy_engine.sample_apps import NODE_SERVER
from tests.e2e.support import Api, Platform, create_project, deploy
from tests.support import GitRepoFactory

pytestmark = pytest.mark.timeout(600)


def node_repo(version: str) -> dict[str, str | bytes]:
    package = {"name": "apps-page", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    return {"package.json": json.dumps(package), "server.js": NODE_SERVER, "version.txt": version}


async def test_apps_page_shows_the_running_app_and_its_live_log(
    browser: Browser,
    platform: Platform,
    api: Api,
    make_git_repo: GitRepoFactory,
    screenshots: Path,
) -> None:
    repo = make_git_repo(node_repo("node v1"))
    await create_project(api, "appspage", repo)
    await deploy(api, "appspage")
    assert await api.edge_get("appspage") == (200, "node v1")

    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)
        await page.goto("/projects/appspage")
        await page.get_by_test_id("nav-apps").click()
        await page.wait_for_url(re.compile(r"/projects/appspage/apps$"))

        row = page.locator('[data-testid=apps] tr[data-testid=app-row][data-process="web"]')
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-slot", "production")
        await expect(row).to_have_attribute("data-healthy", "true")
        await expect(row.get_by_test_id("app-health")).to_have_text("healthy")
        await expect(row.get_by_test_id("app-restarts")).to_have_text("0")
        await expect(row.get_by_test_id("app-uptime")).to_have_text(re.compile(r"^\d+[smhd]"))
        await expect(row.locator('[data-role="status"]')).to_have_text("serving")
        # A process app: no container columns.
        await expect(page.get_by_test_id("image-size")).to_have_count(0)

        log = page.get_by_test_id("app-log")
        # The recent lines first: the app's start line.
        await expect(log.locator(".log-line").filter(has_text="listening on")).to_have_count(1)
        # Then live: a request through the edge makes the app print a line of its own.
        word = uuid.uuid4().hex[:10]
        assert await api.edge_get("appspage", f"/say/{word}") == (200, "said")
        line = log.locator(".log-line").filter(has_text=f"said {word}")
        await expect(line).to_have_count(1)
        await expect(line).to_have_attribute("data-stream", "stdout")
        await expect(line).to_have_attribute("data-process", "web")

        # The table refreshes in place (the uptime grows) without a reload.
        await page.evaluate("window.__appsMark = 1")
        first = await row.get_by_test_id("app-uptime").inner_text()
        await expect(row.get_by_test_id("app-uptime")).not_to_have_text(first)
        assert await page.evaluate("window.__appsMark") == 1

        await shoot(page, screenshots, "apps")
    finally:
        await context.close()
