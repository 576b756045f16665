"""Browser-test fixtures: the platform started as processes (as tests/e2e does, one per module)
and the machine's Chromium driven by Playwright.

Playwright's own browser download cannot be had here (nor in CI), so the tests launch the
Debian package's Chromium (`make ensure-chromium` installs it) by its path. When it is missing
the tests fail saying how to get it; a developer who cannot install it opts out with
`LAUNCHDECK_SKIP_BROWSER_TESTS=1` (CI never sets it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Playwright, async_playwright, expect

from tests.e2e.support import Api, Platform, launch_platform

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out on its own (no registry of browsers is reachable).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

# A page waits on builds and deployments of the real platform: more than Playwright's 5 s.
expect.set_options(timeout=20_000)


def chromium_path() -> str:
    """`LAUNCHDECK_CHROMIUM`, else /usr/bin/chromium, else `chromium` on PATH; fails (or skips,
    on a developer's explicit opt-out) when there is none."""
    candidates = [os.environ.get("LAUNCHDECK_CHROMIUM"), DEFAULT_CHROMIUM, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("LAUNCHDECK_SKIP_BROWSER_TESTS") == "1":
        pytest.skip(
            "no Chromium on this machine and LAUNCHDECK_SKIP_BROWSER_TESTS=1 (a developer's "
            "opt-out; CI installs it with `make ensure-chromium`)"
        )
    pytest.fail(
        f"the dashboard's browser tests need Chromium at {DEFAULT_CHROMIUM} (or "
        "LAUNCHDECK_CHROMIUM): `make ensure-chromium` (as root) or `apt-get install chromium`; "
        "to skip them on a developer machine set LAUNCHDECK_SKIP_BROWSER_TESTS=1",
        pytrace=False,
    )


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        await browser.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, nats_url: str, nats_log: Path
) -> AsyncIterator[Platform]:
    async with launch_platform(
        tmp_path_factory.mktemp("platform"), database_url, nats_url, nats_logs=[nats_log]
    ) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, platform)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the screenshots go (gitignored): looked at by people, kept between runs."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
