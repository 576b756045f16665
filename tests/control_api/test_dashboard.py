"""The dashboard's server side: sign-in and the session cookie, CSRF and same-site checks, what a
read-only token sees and may do, the forms' flows through the API, and the WebSocket routes'
acceptance of the session cookie (only there, only from this site). Browser tests drive the
pages themselves (tests/browser)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from multidict import CIMultiDictProxy

from launchdeck.contracts.api import BuildSettings
from launchdeck.control_api.store.records import Project
from tests.control_api.helpers import T0, activate, new_build, new_project, succeed
from tests.control_api.log_support import receive_frame
from tests.control_api.support import Api, token, unique

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Page:
    status: int
    text: str
    headers: CIMultiDictProxy[str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


class Browser:
    """Requests as a browser signed in with `bearer` sends them: the session cookie, and on a
    POST this site's Origin and the form's CSRF token (unless told otherwise)."""

    def __init__(self, api: Api, bearer: str | None) -> None:
        self.client = api.client
        self.bearer = bearer
        self.origin = str(api.client.make_url("/")).rstrip("/")

    def headers(self, **more: str) -> dict[str, str]:
        self.client.session.cookie_jar.clear()  # only the cookie each request states
        cookie = {"Cookie": f"ld_session={self.bearer}"} if self.bearer else {}
        return {**cookie, **more}

    async def get(self, path: str) -> Page:
        async with self.client.get(path, headers=self.headers(), allow_redirects=False) as r:
            return Page(r.status, await r.text(), r.headers)

    async def csrf(self) -> str:
        match = _CSRF.search((await self.get("/projects")).text)
        assert match, "a signed-in page carries the CSRF token"
        return match[1]

    async def post(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: str | None = "auto",
        origin: str | None = "self",
    ) -> Page:
        form = aiohttp.FormData(list((data or {}).items()))
        if csrf == "auto":
            csrf = await self.csrf()
        if csrf is not None:
            form.add_field("csrf_token", csrf)
        more = {} if origin is None else {"Origin": self.origin if origin == "self" else origin}
        async with self.client.post(
            path, data=form, headers=self.headers(**more), allow_redirects=False
        ) as r:
            return Page(r.status, await r.text(), r.headers)


def admin(api: Api) -> Browser:
    return Browser(api, token(["admin"]))


async def test_sign_in_sets_an_httponly_strict_cookie_and_never_echoes_the_token(
    api: Api,
) -> None:
    browser = Browser(api, None)
    form = await browser.get("/sign-in")
    assert form.status == 200
    assert 'data-testid="sign-in-form"' in form.text
    assert 'name="token"' in form.text

    bad = "not-a-token-" + uuid.uuid4().hex
    refused = await browser.post("/sign-in", {"token": bad}, csrf=None)
    assert refused.status == 401
    assert 'data-testid="error"' in refused.text
    assert bad not in refused.text
    assert "Set-Cookie" not in refused.headers

    good = token(["admin"])
    await api.call("GET", "/api/v1/projects", token=good)  # its row is registered
    signed = await browser.post("/sign-in", {"token": good}, csrf=None)
    assert signed.status == 303
    assert signed.location == "/projects"
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith(f"ld_session={good};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http here; https sets it

    page = await Browser(api, good).get("/projects")
    assert page.status == 200
    assert good not in page.text
    assert 'data-testid="nav-projects"' in page.text
    assert 'data-testid="sign-out"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_sign_in_from_another_site_is_refused(api: Api) -> None:
    good = token(["admin"])
    await api.call("GET", "/api/v1/projects", token=good)
    page = await Browser(api, None).post(
        "/sign-in", {"token": good}, csrf=None, origin="https://evil.example"
    )
    assert page.status == 403
    assert "Set-Cookie" not in page.headers


async def test_sign_out_clears_the_cookie(api: Api) -> None:
    page = await admin(api).post("/sign-out")
    assert page.status == 303
    assert page.location == "/sign-in"
    assert page.headers["Set-Cookie"].startswith('ld_session="";')


@pytest.mark.parametrize(
    "bearer", [None, "garbage", token(["admin"], revoked=True), token(["admin"], expires_in_s=-1)]
)
async def test_pages_redirect_to_sign_in_without_a_valid_session(
    api: Api, bearer: str | None
) -> None:
    await api.call("GET", "/health")  # registers the minted tokens' rows
    browser = Browser(api, bearer)
    for path in ("/projects", "/projects/x", f"/builds/{uuid.uuid4()}", "/projects/x/env"):
        page = await browser.get(path)
        assert (page.status, page.location) == (303, "/sign-in"), path
    name = unique("nosession")
    page = await browser.post(
        "/projects", {"name": name, "repo_url": "https://x.invalid/r"}, csrf="0" * 64
    )
    assert (page.status, page.location) == (303, "/sign-in")
    assert (await api.call("GET", f"/api/v1/projects/{name}")).status == 404


async def test_a_browser_at_the_root_goes_to_the_dashboard(api: Api) -> None:
    async with api.client.get(
        "/", headers={"Accept": "text/html,*/*;q=0.8"}, allow_redirects=False
    ) as r:
        assert (r.status, r.headers["Location"]) == (302, "/projects")
    static = await Browser(api, None).get("/static/dashboard.css")
    assert static.status == 200
    assert "prefers-color-scheme" in static.text


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [(None, "self"), ("0" * 64, "self"), ("auto", "https://evil.example"), ("auto", "null")],
    ids=["no token", "wrong token", "foreign origin", "opaque origin"],
)
async def test_a_forged_post_is_refused(api: Api, csrf: str | None, origin: str) -> None:
    browser = admin(api)
    name = unique("forged")
    page = await browser.post(
        "/projects", {"name": name, "repo_url": "https://x.invalid/r"}, csrf=csrf, origin=origin
    )
    assert page.status == 403
    assert 'data-testid="error"' in page.text
    assert (await api.call("GET", f"/api/v1/projects/{name}")).status == 404


async def test_the_csrf_token_is_the_sessions_own(api: Api) -> None:
    """Another session's CSRF token opens nothing."""
    other = await admin(api).csrf()
    name = unique("swapped")
    page = await admin(api).post(
        "/projects", {"name": name, "repo_url": "https://x.invalid/r"}, csrf=other
    )
    assert page.status == 403


async def test_create_deploy_cancel_through_the_forms(api: Api) -> None:
    browser = admin(api)
    name = unique("form")
    created = await browser.post(
        "/projects",
        {
            "name": name,
            "repo_url": f"https://git.invalid/{name}.git",
            "branch": "trunk",
            "build_command": "make site",
            "output_dir": "",
        },
    )
    assert (created.status, created.location) == (303, f"/projects/{name}")
    project = (await api.call("GET", f"/api/v1/projects/{name}")).body
    assert project["branch"] == "trunk"
    assert project["build"] == {"build_command": "make site"}

    page = await browser.get(f"/projects/{name}")
    assert f'<h1 data-testid="project-name">{name}</h1>' in page.text
    assert 'data-testid="deploy"' in page.text
    assert 'data-testid="deployments"' in page.text

    deployed = await browser.post(f"/projects/{name}/builds", {"ref": "trunk"})
    assert deployed.status == 303
    assert deployed.location.startswith("/builds/")
    build_id = deployed.location.removeprefix("/builds/")
    build = (await api.call("GET", f"/api/v1/builds/{build_id}")).body
    assert (build["ref"], build["status"], build["deploy"]) == ("trunk", "queued", True)

    build_page = await browser.get(f"/builds/{build_id}")
    assert build_page.status == 200
    for testid in ("build-status", "log", "jump-to-end", "log-search", "download-log", "cancel"):
        assert f'data-testid="{testid}"' in build_page.text, testid
    assert f'href="/builds/{build_id}/log.txt"' in build_page.text
    listed = await browser.get(f"/projects/{name}")
    assert f'data-build="{build_id}" data-status="queued"' in listed.text

    log = await browser.get(f"/builds/{build_id}/log.txt")
    assert log.status == 200
    assert log.headers["Content-Type"].startswith("text/plain")

    cancelled = await browser.post(f"/builds/{build_id}/cancel")
    assert (cancelled.status, cancelled.location) == (303, f"/builds/{build_id}")
    build = (await api.call("GET", f"/api/v1/builds/{build_id}")).body
    assert build["status"] == "cancelled"
    assert 'data-testid="cancel"' not in (await browser.get(f"/builds/{build_id}")).text


async def test_an_invalid_project_shows_the_apis_detail_in_the_form(api: Api) -> None:
    page = await admin(api).post(
        "/projects", {"name": "Not A Name!", "repo_url": "https://x.invalid/r"}
    )
    assert page.status == 422
    assert 'data-testid="error"' in page.text
    assert "name" in page.text
    assert 'value="Not A Name!"' in page.text  # what was typed is kept


async def _live_project(pool: asyncpg.Pool) -> tuple[Project, list[str]]:
    """A project with two builds deployed in turn (the second live) and a live preview."""
    project = await new_project(pool)
    ids = []
    for _ in range(2):
        build = await new_build(pool, project)
        await activate(pool, await succeed(pool, build), T0)
        ids.append(str(build.id))
    preview = await new_build(pool, project, environment="preview")
    await activate(pool, await succeed(pool, preview), T0)
    ids.append(str(preview.id))
    return project, ids


async def test_rollback_and_promote_through_the_forms(api: Api, pool: asyncpg.Pool) -> None:
    project, (first, second, preview) = await _live_project(pool)
    browser = admin(api)
    page = await browser.get(f"/projects/{project.name}")
    assert 'data-testid="live-url"' in page.text
    rollback_forms = re.findall(
        r'data-testid="rollback".*?name="build_id" value="([^"]+)"', page.text, re.S
    )
    assert first in rollback_forms
    assert second not in rollback_forms
    assert 'data-testid="promote"' in page.text
    assert f'data-build="{preview}" data-status="active" data-environment="preview"' in page.text

    rolled = await browser.post(f"/projects/{project.name}/rollback", {"build_id": first})
    assert (rolled.status, rolled.location) == (303, f"/projects/{project.name}")
    promoted = await browser.post(f"/projects/{project.name}/promote", {"build_id": preview})
    assert promoted.status == 303
    history = (await api.call("GET", f"/api/v1/projects/{project.id}/deployments")).body["items"]
    pending = [(d["build_id"], d["environment"]) for d in history if d["status"] == "pending"]
    assert (first, "production") in pending
    assert (preview, "production") in pending

    fragment = await browser.get(f"/projects/{project.name}/live")
    assert fragment.status == 200
    assert "<html" not in fragment.text
    assert fragment.text.count('data-testid="deployment-row"') == len(history)

    listing = await browser.get("/projects")
    row = re.search(
        rf'<tr data-testid="project-row" data-project="{project.name}">.*?</tr>', listing.text, re.S
    )
    assert row is not None
    assert 'data-testid="live-url"' in row[0]
    assert 'data-testid="build-status"' in row[0]
    assert 'data-testid="deployment-status"' in row[0]


async def test_env_vars_never_reach_the_page(api: Api, pool: asyncpg.Pool) -> None:
    project, _ = await _live_project(pool)
    browser = admin(api)
    secret = "s3cret-" + uuid.uuid4().hex
    path = f"/projects/{project.name}/env"
    saved = await browser.post(path, {"key": "API_KEY", "value": secret, "targets": "production"})
    assert (saved.status, saved.location) == (303, f"{path}?changed=1")
    page = await browser.get(saved.location)
    assert 'data-key="API_KEY"' in page.text
    assert secret not in page.text
    assert 'data-testid="redeploy"' in page.text
    env = (await api.call("GET", f"/api/v1/projects/{project.id}/env")).body["items"]
    assert [(v["key"], v["targets"]) for v in env] == [("API_KEY", ["production"])]

    redeployed = await browser.post(f"/projects/{project.name}/redeploy")
    assert redeployed.status == 303
    history = (await api.call("GET", f"/api/v1/projects/{project.id}/deployments")).body["items"]
    assert history[0]["trigger"] == "redeploy"

    deleted = await browser.post(f"{path}/delete", {"key": "API_KEY"})
    assert deleted.status == 303
    assert (await api.call("GET", f"/api/v1/projects/{project.id}/env")).body["items"] == []


async def test_settings_and_delete_through_the_forms(api: Api, pool: asyncpg.Pool) -> None:
    project = await new_project(pool, build=BuildSettings(timeout_s=120))
    browser = admin(api)
    path = f"/projects/{project.name}/settings"
    assert 'data-testid="settings"' in (await browser.get(path)).text
    domain = f"{unique('www')}.example.org"
    saved = await browser.post(
        path, {"branch": "release", "start_command": "./serve", "domains": f"{domain}\n\n"}
    )
    assert saved.status == 303, saved.text
    body = (await api.call("GET", f"/api/v1/projects/{project.id}")).body
    assert body["branch"] == "release"
    assert body["domains"] == [domain]
    assert body["build"] == {"start_command": "./serve", "timeout_s": 120}  # the rest is kept

    wrong = await browser.post(f"/projects/{project.name}/delete", {"confirm_name": "nope"})
    assert wrong.status == 422
    assert 'data-testid="error"' in wrong.text
    assert (await api.call("GET", f"/api/v1/projects/{project.id}")).status == 200
    deleted = await browser.post(f"/projects/{project.name}/delete", {"confirm_name": project.name})
    assert (deleted.status, deleted.location) == (303, "/projects")
    assert (await api.call("GET", f"/api/v1/projects/{project.id}")).status == 404


async def test_a_read_token_sees_no_write_control_and_its_forged_writes_are_refused(
    api: Api, pool: asyncpg.Pool
) -> None:
    project, (first, _, _) = await _live_project(pool)
    reader = Browser(api, token(["read"], str(project.id)))
    name = project.name
    builds = (await api.call("GET", f"/api/v1/projects/{project.id}/builds")).body["items"]
    for path in (
        "/projects",
        f"/projects/{name}",
        f"/projects/{name}/live",
        f"/projects/{name}/env?changed=1",
        f"/projects/{name}/settings",
        f"/builds/{builds[0]['id']}",
    ):
        page = await reader.get(path)
        assert page.status == 200, path
        assert "data-write" not in page.text, path

    for path, data in [
        (f"/projects/{name}/builds", {}),
        (f"/projects/{name}/rollback", {"build_id": first}),
        (f"/projects/{name}/env", {"key": "X", "value": "y"}),
        (f"/projects/{name}/settings", {"branch": "other"}),
        (f"/projects/{name}/delete", {"confirm_name": name}),
        ("/projects", {"name": unique("reader"), "repo_url": "https://x.invalid/r"}),
    ]:
        page = await reader.post(path, data)
        assert page.status == 403, path
        assert 'data-testid="error"' in page.text, path
    after = (await api.call("GET", f"/api/v1/projects/{project.id}/builds")).body["items"]
    assert len(after) == len(builds)
    assert (await api.call("GET", f"/api/v1/projects/{project.id}")).body["branch"] == "main"


async def test_the_websocket_routes_take_the_cookie_from_this_site_only(
    api: Api, pool: asyncpg.Pool
) -> None:
    project, (first, _, _) = await _live_project(pool)
    browser = admin(api)
    cookie = browser.headers()
    ws = await api.client.ws_connect("/api/v1/ws", headers={**cookie, "Origin": browser.origin})
    channel = f"project:{project.id}:events"
    await ws.send_json({"type": "subscribe", "channel": channel})
    assert await receive_frame(ws) == {"type": "subscribed", "channel": channel}
    await ws.close()

    logs = await api.client.ws_connect(
        f"/api/v1/builds/{first}/logs/ws", headers={**browser.headers(), "Origin": browser.origin}
    )
    await logs.close()

    for headers, status in [
        ({**browser.headers(), "Origin": "https://evil.example"}, 403),
        (browser.headers(), 403),  # no Origin: not a page of this site
        ({"Origin": browser.origin}, 401),  # no cookie
    ]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await api.client.ws_connect("/api/v1/ws", headers=headers)
        assert refused.value.status == status


async def test_the_json_api_ignores_the_cookie(api: Api) -> None:
    browser = admin(api)
    headers = {**browser.headers(), "Origin": browser.origin}
    async with api.client.get("/api/v1/projects", headers=headers) as r:
        assert r.status == 401
    async with api.client.post(
        "/api/v1/projects",
        json={"name": unique("c"), "repo_url": "https://x.invalid/r"},
        headers={**browser.headers(), "Origin": browser.origin},
    ) as r:
        assert r.status == 401
