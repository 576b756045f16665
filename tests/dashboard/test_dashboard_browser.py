"""The dashboard in a real browser (the machine's Chromium driven by Playwright) against the whole
platform started as processes: sign in with a token, create a project from a local git repo
through the form, deploy it and watch the build's log arrive live, see it live at its URL, roll
back from the deployments table while another tab follows without reload, a read-only token that
sees no write control and whose writes are refused anyway, forged form posts refused, sign out.

Selectors are the contract's `data-testid`s (docs: notes of issue 12). Screenshots of the main
pages at 1280 and 360 px wide (and one in dark mode) go to test-output/screenshots/ to be looked
at; at 360 px the page itself must not scroll sideways (wide tables scroll in their own box).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.support import Api, Platform, create_project, deploy
from tests.polling import eventually
from tests.support import GitRepoFactory, commit_files

# A build that takes a few seconds and says so line by line (stdout, one ANSI-coloured line,
# stderr), so the page has lines to show while the build still runs.
SLOW_BUILD = """\
import sys, time
for i in range(1, 31):
    print(f"step {i} of 30", flush=True)
    time.sleep(0.2)
print("\\x1b[31mcoloured red\\x1b[0m done", flush=True)
print("a note on stderr", file=sys.stderr, flush=True)
"""
FAILING_BUILD = """\
import sys
print("the build broke here", file=sys.stderr)
sys.exit(3)
"""
LIVE_TIMEOUT_MS = 90_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

pytestmark = pytest.mark.timeout(600)
SHORT_PHONE = {"width": 360, "height": 420}
# Whether a scroll box shows its last line.
AT_END = "l => l.scrollTop + l.clientHeight >= l.scrollHeight - 8"
# Whether the focused element is visibly marked (an outline or a ring drawn as a shadow).
FOCUS_SHOWN = """(() => { const st = getComputedStyle(document.activeElement);
    return (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0)
        || st.boxShadow !== 'none'; })()"""
# The page's colours (the root's and the body's background and text), to tell the schemes apart.
COLOURS = """[document.documentElement, document.body].flatMap(
    e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color])"""


def site(title: str) -> dict[str, str | bytes]:
    return {
        "index.html": f"<!doctype html><title>{title}</title><h1>{title}</h1>",
        "build.py": SLOW_BUILD,
    }


async def new_context(browser: Browser, platform: Platform, **options: Any) -> BrowserContext:
    context = await browser.new_context(base_url=platform.api_url, **options)
    context.set_default_timeout(30_000)
    return context


async def sign_in(page: Page, token: str) -> None:
    await page.goto("/sign-in")
    form = page.get_by_test_id("sign-in-form")
    await form.locator("input[name=token]").fill(token)
    await form.get_by_test_id("sign-in").click()
    await page.wait_for_url(re.compile(r"/projects$"))


async def submit(form: Locator) -> None:
    """Press the form's submit button (a <button> or <input type=submit>)."""
    await form.locator("button, input[type=submit]").first.click()


async def csrf_token(page: Page) -> str:
    """The page's CSRF token, as every POST form carries it (the sign-out form is on each page)."""
    value = await page.get_by_test_id("sign-out").locator("input[name=csrf_token]").input_value()
    assert value
    return value


async def mark_page(page: Page) -> None:
    """Tag the page's JavaScript world: the tag survives until the page (re)loads."""
    await page.evaluate("window.__launchdeckTestMark = 'still here'")


async def assert_not_reloaded(page: Page) -> None:
    assert await page.evaluate("window.__launchdeckTestMark") == "still here", "page reloaded"


async def shoot(page: Page, directory: Path, name: str) -> None:
    """Full-page screenshots at 1280 and 360 px; at 360 the document must not be wider than the
    screen (tables scroll inside their own box or stack)."""
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(directory / f"{name}-1280.png"), full_page=True)
    await page.set_viewport_size(PHONE)
    width = await page.evaluate("document.documentElement.scrollWidth")
    await page.screenshot(path=str(directory / f"{name}-360.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    assert width <= PHONE["width"], f"{name} is {width}px wide on a 360px screen"


def log_box(page: Page) -> Locator:
    return page.get_by_test_id("log")


async def follows_the_end_until_scrolled_up(page: Page) -> None:
    """While the build runs and its log overflows the box: scrolled up, the box stays where the
    reader put it as lines arrive; "jump to end" follows the end again."""
    lines = page.locator("[data-testid=log] .log-line")
    box = log_box(page)
    await page.wait_for_function(
        "() => { const l = document.querySelector('[data-testid=log]');"
        " return l.scrollHeight > l.clientHeight + 40; }"
    )
    assert await box.evaluate(AT_END), "the log does not follow its end"
    finished = re.compile(r"succeeded|failed|cancelled", re.I)
    # A line arriving between the scroll and its event scrolls back down once (the page had
    # not seen the reader move yet): scroll up again then.
    for _ in range(3):
        await box.evaluate("l => { l.scrollTop = 0; }")
        seen = await lines.count()
        await page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=log] .log-line').length > n + 1",
            arg=seen,
        )
        if await box.evaluate("l => l.scrollTop") == 0:
            break
    else:
        raise AssertionError("the log keeps scrolling to the end after the reader scrolled up")
    assert not finished.search(await page.get_by_test_id("build-status").inner_text())
    await page.get_by_test_id("jump-to-end").click()
    assert await box.evaluate(AT_END)


async def edge_serves(api: Api, url: str, text: str) -> None:
    """The live URL (`http://<name>.localhost:<edge port>/`) serves `text` through the edge."""
    parts = urlsplit(url)
    assert parts.port == api.platform.edge_port, url
    host = parts.hostname or ""

    async def served() -> bool:
        status, body = await api.edge_get("", parts.path or "/", host=host)
        return status == 200 and text in body

    await eventually(f"{url} to serve {text!r}", served, timeout_s=60)


async def build_count(api: Api, project: str) -> int:
    status, body = await api.call("GET", f"/projects/{project}/builds")
    assert status == 200, body
    return len(body["items"])


async def test_sign_in_keeps_the_token_in_an_http_only_cookie(
    browser: Browser, platform: Platform, screenshots: Path
) -> None:
    """Pages redirect to sign-in without a session; a bad token is refused (401, the form again
    with an error); the right one lands on /projects with the token in an HttpOnly,
    SameSite=Strict cookie that page scripts cannot read and the JSON API does not accept."""
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await page.goto("/projects")
        await expect(page).to_have_url(re.compile(r"/sign-in"))
        await expect(page.get_by_test_id("sign-in-form")).to_be_visible()
        await shoot(page, screenshots, "sign-in")

        await page.locator("input[name=token]").fill("not-a-token")
        async with page.expect_response(
            lambda r: r.request.method == "POST" and urlsplit(r.url).path == "/sign-in"
        ) as refused:
            await page.get_by_test_id("sign-in").click()
        assert (await refused.value).status == 401
        await expect(page.get_by_test_id("error")).to_be_visible()
        await expect(page.get_by_test_id("sign-in-form")).to_be_visible()

        await sign_in(page, platform.token)
        await expect(page.get_by_test_id("projects")).to_be_visible()
        await expect(page.get_by_test_id("nav-projects")).to_be_visible()
        (cookie,) = [c for c in await context.cookies() if c["name"] == "ld_session"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/"
        assert "ld_session" not in await page.evaluate("document.cookie")
        stored = await page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
        assert platform.token not in stored

        # The JSON API takes bearer tokens only: the cookie alone is no credential there.
        response = await context.request.get("/api/v1/projects")
        assert response.status == 401, await response.text()
    finally:
        await context.close()


async def test_create_deploy_watch_the_log_go_live_and_roll_back(
    browser: Browser,
    platform: Platform,
    api: Api,
    make_git_repo: GitRepoFactory,
    screenshots: Path,
) -> None:
    """The newcomer's path: a project created through the form from a local repo, deployed with
    one button, its build's log lines arriving in the page while it runs, succeeded, its live
    URL on the project page serving the site through the edge; a second version, then a
    rollback from the deployments table (confirmed) that a second tab sees without reload."""
    repo = make_git_repo(site("Version one"))
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)

        form = page.get_by_test_id("new-project")
        await expect(form).to_have_attribute("data-write", re.compile(r".*"))
        await form.locator("input[name=name]").fill("browser-site")
        await form.locator("input[name=repo_url]").fill(str(repo))
        await expect(form.locator("input[name=branch]")).to_have_value("main")
        await form.locator("input[name=build_command]").fill("python3 build.py")
        await form.locator("input[name=output_dir]").fill(".")
        await form.get_by_test_id("create-project").click()
        await page.wait_for_url(re.compile(r"/projects/browser-site$"))
        await expect(page.get_by_test_id("project-name")).to_have_text("browser-site")
        await expect(page.get_by_test_id("live-url")).to_have_count(0)  # nothing deployed yet

        # Deploy: the build page, whose log fills while the build runs, without reload.
        await submit(page.get_by_test_id("deploy"))
        await page.wait_for_url(re.compile(r"/builds/[0-9a-f-]{36}$"))
        first_build = page.url.rsplit("/", 1)[1]
        await mark_page(page)
        lines = page.locator("[data-testid=log] .log-line")
        status = page.get_by_test_id("build-status")
        await expect(page.locator(".log-line", has_text="step 1 of 30")).to_have_count(1)
        seen_while_running = await lines.count()
        status_then = (await status.inner_text()).strip().lower()
        assert not {"succeeded", "failed", "cancelled"} & set(status_then.split()), status_then
        await expect(page.get_by_test_id("cancel")).to_have_attribute(
            "data-write", re.compile(".*")
        )
        await page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=log] .log-line').length > n",
            arg=seen_while_running,
        )
        await expect(status).to_have_text(re.compile("succeeded", re.I), timeout=LIVE_TIMEOUT_MS)
        await assert_not_reloaded(page)
        await expect(page.locator(".log-line", has_text="step 30 of 30")).to_have_count(1)

        # Streams told apart, ANSI colours rendered (no escape codes left in the text).
        stderr = page.locator(".log-line[data-stream=stderr]", has_text="a note on stderr")
        await expect(stderr).to_have_count(1)
        assert await page.locator(".log-line[data-stream=system]").count() >= 1
        coloured = page.locator(".log-line", has_text="coloured red")
        await expect(coloured).to_have_count(1)
        assert "[31m" not in await coloured.inner_text()
        assert await coloured.locator("span").count() >= 1
        seqs = [int(s) for s in await lines.evaluate_all("ls => ls.map(l => l.dataset.seq)")]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        # The whole log as text, fetched with the session.
        download = page.get_by_test_id("download-log")
        assert await download.get_attribute("href") == f"/builds/{first_build}/log.txt"
        log_text = await (await context.request.get(f"/builds/{first_build}/log.txt")).text()
        assert "step 30 of 30" in log_text
        assert "a note on stderr" in log_text
        await expect(page.get_by_test_id("jump-to-end")).to_be_attached()
        await expect(page.get_by_test_id("log-search")).to_be_attached()
        # Search keeps the matching lines only, until cleared.
        total = await lines.count()
        await page.get_by_test_id("log-search").fill("step 7 of")
        await expect(page.locator("[data-testid=log] .log-line:visible")).to_have_count(1)
        await expect(page.locator(".log-line:visible", has_text="step 7 of 30")).to_have_count(1)
        await page.get_by_test_id("log-search").fill("")
        await expect(page.locator("[data-testid=log] .log-line:visible")).to_have_count(total)
        await shoot(page, screenshots, "build-log")
        # Loaded again after the end: the whole log from the start, and nothing to cancel.
        shown = await lines.count()
        await page.reload()
        await expect(page.get_by_test_id("build-status")).to_have_text(
            re.compile("succeeded", re.I)
        )
        await expect(lines).to_have_count(shown)
        await expect(page.get_by_test_id("cancel")).to_have_count(0)

        # Live: the project page shows its URL, which serves the site through the edge.
        await api.wait_build_deployment(first_build)
        await page.goto("/projects/browser-site")
        live = page.get_by_test_id("live-url").first
        await expect(live).to_be_visible()
        live_url = await live.get_attribute("href")
        assert live_url
        assert live_url.startswith("http://browser-site.localhost:"), live_url
        await edge_serves(api, live_url, "<h1>Version one</h1>")
        site_page = await context.new_page()
        await site_page.goto(live_url)  # Chromium resolves *.localhost to loopback itself
        await expect(site_page.locator("h1")).to_have_text("Version one")
        await site_page.close()
        await expect(
            page.locator(f"[data-testid=build-row][data-build='{first_build}']")
        ).to_have_attribute("data-status", "succeeded")

        # A second version, deployed from the same button, watched on a small screen where
        # the log overflows its box early.
        commit_files(repo, site("Version two"), "second version")
        await page.set_viewport_size(SHORT_PHONE)
        await submit(page.get_by_test_id("deploy"))
        await page.wait_for_url(re.compile(r"/builds/[0-9a-f-]{36}$"))
        second_build = page.url.rsplit("/", 1)[1]
        assert second_build != first_build
        await follows_the_end_until_scrolled_up(page)
        await expect(page.get_by_test_id("build-status")).to_have_text(
            re.compile("succeeded", re.I), timeout=LIVE_TIMEOUT_MS
        )
        assert await log_box(page).evaluate(AT_END), "jumped to the end, then not following"
        await page.set_viewport_size(DESKTOP)
        await api.wait_build_deployment(second_build)
        await edge_serves(api, live_url, "<h1>Version two</h1>")

        # A second tab follows the project; the first rolls back to build 1 (confirming).
        watcher = await context.new_page()
        await watcher.goto("/projects/browser-site")
        active = watcher.locator(
            "[data-testid=deployment-row][data-status=active][data-environment=production]"
        )
        await expect(active).to_have_attribute("data-build", second_build)
        await mark_page(watcher)

        await page.goto("/projects/browser-site")
        await shoot(page, screenshots, "project")
        await page.emulate_media(color_scheme="dark")
        dark = await page.evaluate(COLOURS)
        await page.screenshot(path=str(screenshots / "project-dark-1280.png"), full_page=True)
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=str(screenshots / "project-dark-360.png"), full_page=True)
        await page.set_viewport_size(DESKTOP)
        await page.emulate_media(color_scheme="light")
        assert dark != await page.evaluate(COLOURS), "no dark mode (prefers-color-scheme: dark)"

        assert await page.get_by_test_id("rollback").count() >= 1
        rollback = page.locator(
            f"[data-testid=rollback]:has(input[name=build_id][value='{first_build}'])"
        )
        await expect(rollback).to_have_count(1)
        await expect(rollback).to_have_attribute("data-write", re.compile(r".*"))
        # The live build offers no rollback to itself.
        await expect(
            page.locator(
                f"[data-testid=rollback]:has(input[name=build_id][value='{second_build}'])"
            )
        ).to_have_count(0)
        dialogs: list[str] = []

        async def confirm(dialog: Any) -> None:
            dialogs.append(dialog.type)
            await dialog.accept()

        page.once("dialog", confirm)
        await submit(rollback)
        await expect(active).to_have_attribute("data-build", first_build, timeout=LIVE_TIMEOUT_MS)
        assert dialogs == ["confirm"]
        await assert_not_reloaded(watcher)
        await edge_serves(api, live_url, "<h1>Version one</h1>")
        await expect(
            watcher.locator(f"[data-testid=deployment-row][data-build='{second_build}']").first
        ).not_to_have_attribute("data-status", "active")

        # The projects list: the live URL, last build's and deployment's status.
        await page.goto("/projects")
        row = page.locator("[data-testid=project-row][data-project=browser-site]")
        await expect(row.get_by_test_id("live-url")).to_have_attribute("href", live_url)
        await expect(row.get_by_test_id("build-status")).to_have_text(re.compile("succeeded", re.I))
        await expect(row.get_by_test_id("deployment-status")).to_have_text(re.compile(r"\w"))
        await expect(row.get_by_test_id("project-link")).to_have_attribute(
            "href", "/projects/browser-site"
        )
        await shoot(page, screenshots, "projects")
    finally:
        await context.close()


async def test_env_vars_page_lists_keys_never_values(
    browser: Browser,
    platform: Platform,
    api: Api,
    make_git_repo: GitRepoFactory,
    screenshots: Path,
) -> None:
    """The env page lists each key with its targets; the value never reaches the browser."""
    repo = make_git_repo({"index.html": "<h1>env</h1>"})
    await create_project(api, "env-page", repo)
    secret_value = "s3cr3t-" + "x" * 24
    status, body = await api.call(
        "PUT", "/projects/env-page/env/API_KEY", {"value": secret_value, "targets": ["production"]}
    )
    assert status in (200, 201), body
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)
        await page.goto("/projects/env-page/env")
        table = page.get_by_test_id("env-vars")
        await expect(table.locator("[data-key=API_KEY]")).to_have_count(1)
        assert secret_value not in await page.content()
        # Added through the form, for production and previews only.
        form = page.get_by_test_id("env-set")
        await form.locator("input[name=key]").fill("FEATURE_FLAG")
        await form.locator("input[name=value]").fill("flag-value-" + "y" * 16)
        await form.locator("input[name=targets][value=build]").uncheck()
        await submit(form)
        row = table.locator("[data-key=FEATURE_FLAG]")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("production")
        await expect(row).not_to_contain_text("build")
        assert "flag-value-" not in await page.content()
        await expect(page.get_by_test_id("redeploy")).to_be_visible()
        status, listed = await api.call("GET", "/projects/env-page/env")
        assert status == 200, listed
        targets = {v["key"]: sorted(v["targets"]) for v in listed["items"]}
        assert targets == {"API_KEY": ["production"], "FEATURE_FLAG": ["preview", "production"]}
        await shoot(page, screenshots, "env-vars")

        # Deleted from its row, after confirming.
        page.once("dialog", lambda dialog: dialog.accept())
        await submit(table.locator("[data-key=API_KEY]").get_by_test_id("env-delete"))
        await expect(page.get_by_test_id("env-vars").locator("[data-key=API_KEY]")).to_have_count(0)
        await expect(
            page.get_by_test_id("env-vars").locator("[data-key=FEATURE_FLAG]")
        ).to_have_count(1)
    finally:
        await context.close()


async def test_failed_build_shows_its_error_at_the_top(
    browser: Browser, platform: Platform, api: Api, make_git_repo: GitRepoFactory
) -> None:
    """A build that fails: its page says `failed` and shows the build's error above the log."""
    repo = make_git_repo({"index.html": "<h1>x</h1>", "fail.py": FAILING_BUILD})
    await create_project(
        api, "failing", repo, build={"build_command": "python3 fail.py", "output_dir": "."}
    )
    status, build = await api.call("POST", "/projects/failing/builds")
    assert status == 202, build
    finished = await api.wait_build(build["id"])
    assert finished["status"] == "failed", finished
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)
        await page.goto(f"/builds/{build['id']}")
        await expect(page.get_by_test_id("build-status")).to_have_text(re.compile("failed", re.I))
        error = page.get_by_test_id("build-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text(finished["error"][:40])
        await expect(page.locator(".log-line", has_text="the build broke here")).to_have_count(1)
        error_box = await error.bounding_box()
        log_box_at = await log_box(page).bounding_box()
        assert error_box is not None
        assert log_box_at is not None
        assert error_box["y"] < log_box_at["y"]
    finally:
        await context.close()


async def test_project_form_shows_the_apis_refusal_and_settings_delete_with_confirmation(
    browser: Browser, platform: Platform, api: Api, make_git_repo: GitRepoFactory
) -> None:
    """A name the API refuses: the form again with its reason. Settings change the branch; the
    delete form refuses a mistyped name and deletes on the right one."""
    repo = make_git_repo({"index.html": "<h1>settings</h1>"})
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)
        form = page.get_by_test_id("new-project")
        await form.locator("input[name=name]").fill("Not A Valid Name")
        await form.locator("input[name=repo_url]").fill(str(repo))
        async with page.expect_response(
            lambda r: r.request.method == "POST" and urlsplit(r.url).path == "/projects"
        ) as refused:
            await form.get_by_test_id("create-project").click()
        assert (await refused.value).status == 422
        await expect(page.get_by_test_id("error")).to_contain_text("name")
        await expect(page.get_by_test_id("new-project")).to_be_visible()

        await create_project(api, "settings-page", repo)
        await page.goto("/projects/settings-page/settings")
        settings = page.get_by_test_id("settings")
        await settings.locator("input[name=branch]").fill("release")
        await submit(settings)
        await expect(page.get_by_test_id("error")).to_have_count(0)
        _, project = await api.call("GET", "/projects/settings-page")
        assert project["branch"] == "release"

        await page.goto("/projects/settings-page/settings")
        delete = page.get_by_test_id("delete-project")
        await delete.locator("input[name=confirm_name]").fill("settings-pag")
        await submit(delete)
        await expect(page.get_by_test_id("error")).to_be_visible()
        status, _ = await api.call("GET", "/projects/settings-page")
        assert status == 200
        await page.goto("/projects/settings-page/settings")
        delete = page.get_by_test_id("delete-project")
        await delete.locator("input[name=confirm_name]").fill("settings-page")
        await submit(delete)
        await page.wait_for_url(re.compile(r"/projects$"))
        await expect(page.locator("[data-project=settings-page]")).to_have_count(0)
        status, _ = await api.call("GET", "/projects/settings-page")
        assert status == 404
    finally:
        await context.close()


async def test_read_only_token_sees_no_write_control_and_is_refused(
    browser: Browser, platform: Platform, api: Api, make_git_repo: GitRepoFactory
) -> None:
    """A token with only `read` on one project: no `[data-write]` on its pages, and a write it
    posts anyway (with a valid CSRF token) is refused by the API, shown as an error page."""
    repo = make_git_repo({"index.html": "<h1>read only</h1>"})
    await create_project(api, "read-only", repo)
    build, _ = await deploy(api, "read-only")
    status, minted = await api.call(
        "POST", "/tokens", {"name": "viewer", "scopes": ["read"], "project_id": "read-only"}
    )
    assert status == 201, minted
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, minted["token"])
        for path in ("/projects", "/projects/read-only", f"/builds/{build['id']}"):
            await page.goto(path)
            await expect(page.get_by_test_id("nav-projects")).to_be_visible()
            assert await page.locator("[data-write]").count() == 0, path
        await page.goto("/projects/read-only")
        await expect(page.get_by_test_id("project-name")).to_have_text("read-only")
        await expect(page.get_by_test_id("deployments")).to_be_visible()
        await expect(page.get_by_test_id("deploy")).to_have_count(0)

        before = await build_count(api, "read-only")
        response = await context.request.post(
            "/projects/read-only/builds",
            form={"csrf_token": await csrf_token(page)},
            headers={"Origin": platform.api_url},
            max_redirects=0,
        )
        assert response.status == 403, await response.text()
        assert 'data-testid="error"' in await response.text()
        assert await build_count(api, "read-only") == before
    finally:
        await context.close()


async def test_forged_form_posts_are_refused(
    browser: Browser, platform: Platform, api: Api, make_git_repo: GitRepoFactory
) -> None:
    """With the session cookie but without the page's CSRF token (or a wrong one, or from
    another site's Origin), a form post is refused with 403 and changes nothing."""
    repo = make_git_repo({"index.html": "<h1>forged</h1>"})
    await create_project(api, "forged", repo)
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await sign_in(page, platform.token)
        await page.goto("/projects/forged")
        token = await csrf_token(page)
        attempts: list[tuple[dict[str, str], dict[str, str]]] = [
            ({}, {}),
            ({"csrf_token": "not-the-token"}, {}),
            ({"csrf_token": token}, {"Origin": "http://attacker.example"}),
        ]
        for form, headers in attempts:
            response = await context.request.post(
                "/projects/forged/builds", form=form, headers=headers, max_redirects=0
            )
            assert response.status == 403, (form, headers, response.status)
            assert 'data-testid="error"' in await response.text()
        assert await build_count(api, "forged") == 0
        # Nor can another site sign the user out.
        response = await context.request.post(
            "/sign-out",
            form={"csrf_token": token},
            headers={"Origin": "http://attacker.example"},
            max_redirects=0,
        )
        assert response.status == 403
        assert any(c["name"] == "ld_session" for c in await context.cookies())
    finally:
        await context.close()


async def test_keyboard_sign_in_and_sign_out(browser: Browser, platform: Platform) -> None:
    """Signed in with the keyboard alone (the focused control visibly marked); signing out
    clears the cookie and the pages send you to sign in again."""
    context = await new_context(browser, platform)
    try:
        page = await context.new_page()
        await page.goto("/sign-in")
        for _ in range(10):
            if await page.evaluate("document.activeElement?.name") == "token":
                break
            await page.keyboard.press("Tab")
        else:
            raise AssertionError("the token field is not reachable with Tab")
        assert await page.evaluate(FOCUS_SHOWN), "no visible focus on the token field"
        await page.keyboard.type(platform.token)
        await page.keyboard.press("Enter")
        await page.wait_for_url(re.compile(r"/projects$"))
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.tagName") in ("A", "BUTTON", "INPUT")
        assert await page.evaluate(FOCUS_SHOWN), "no visible focus after Tab"

        await submit(page.get_by_test_id("sign-out"))
        await page.wait_for_url(re.compile(r"/sign-in"))
        assert not [c for c in await context.cookies() if c["name"] == "ld_session"]
        await page.goto("/projects")
        await expect(page).to_have_url(re.compile(r"/sign-in"))
        await expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    finally:
        await context.close()
