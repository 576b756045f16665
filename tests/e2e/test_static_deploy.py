"""The first live path, end to end: git repo → build → release → served by Caddy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.e2e.support import Api, create_project, deploy, read_ws, site
from tests.support import GitRepoFactory, commit_files


async def test_static_site_is_served_with_spa_fallback(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    """A static site in a fresh repo is built, activated and served at <project>.localhost."""
    repo = make_git_repo(site("Hello from Launchdeck"))
    await create_project(api, "hello", repo)
    build, deployment = await deploy(api, "hello")
    assert build["number"] == 1
    assert len(build["commit_sha"]) == 40
    assert deployment["url"].startswith("http://hello.localhost")
    assert deployment["activated_at"]

    status, body = await api.edge_get("hello", "/")
    assert status == 200
    assert "<h1>Hello from Launchdeck</h1>" in body
    status, body = await api.edge_get("hello", "/style.css")
    assert status == 200
    assert "rebeccapurple" in body
    # An unknown client-side route falls back to index.html.
    status, body = await api.edge_get("hello", "/some/client/route")
    assert status == 200
    assert "<h1>Hello from Launchdeck</h1>" in body


async def test_new_commit_then_rollback(api: Api, make_git_repo: GitRepoFactory) -> None:
    """A second build serves new content; rollback serves the old content again."""
    repo = make_git_repo(site("Version one"))
    await create_project(api, "versions", repo)
    first, dep1 = await deploy(api, "versions")
    commit_files(repo, site("Version two"), "second version")
    second, dep2 = await deploy(api, "versions")
    assert second["commit_sha"] != first["commit_sha"]
    assert second["number"] == 2
    assert "Version two" in (await api.edge_get("versions"))[1]

    status, rollback = await api.call("POST", "/projects/versions/rollback")
    assert status == 202, rollback
    assert rollback["build_id"] == first["id"]
    await api.wait_deployment(rollback["id"])
    assert "Version one" in (await api.edge_get("versions"))[1]

    status, history = await api.call("GET", "/projects/versions/deployments")
    assert status == 200
    items = history["items"]
    assert [d["id"] for d in items] == [rollback["id"], dep2["id"], dep1["id"]]
    assert [d["status"] for d in items] == ["active", "rolled_back", "superseded"]
    assert all(d["created_at"] and d["activated_at"] for d in items)


async def test_missing_repository_fails_with_a_readable_reason(api: Api, tmp_path: Path) -> None:
    """A build of a repository that does not exist fails; the reason is in the log and error."""
    missing = tmp_path / "no-such-repo"
    status, _ = await api.call("POST", "/projects", {"name": "ghost", "repo_url": str(missing)})
    assert status == 201
    status, build = await api.call("POST", "/projects/ghost/builds", {})
    assert status == 202
    finished = await api.wait_build(build["id"])
    assert finished["status"] == "failed"
    assert finished["error"]
    assert "no-such-repo" in finished["error"] or "not" in finished["error"].lower()
    status, log = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200
    assert finished["error"].splitlines()[0] in log


async def test_bad_input_and_missing_token(api: Api) -> None:
    """A non-slug name gets 422 problem+json naming the field; no token gets 401."""
    async with api.session.post(
        f"{api.platform.api_url}/api/v1/projects",
        json={"name": "Not A Slug!", "repo_url": "https://example.invalid/x.git"},
        headers=api.platform.headers,
    ) as resp:
        assert resp.status == 422
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        problem = json.loads(await resp.text())
        assert problem["status"] == 422
        assert any(e["field"].endswith("name") for e in problem["errors"])
    async with api.session.get(f"{api.platform.api_url}/api/v1/projects") as resp:
        assert resp.status == 401
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    async with api.session.get(f"{api.platform.api_url}/health") as resp:
        assert resp.status == 200


BUILD_SCRIPT = """\
import os, time
os.makedirs("dist", exist_ok=True)
for i in range(1, 401):
    print(f"line {i}", flush=True)
    time.sleep(0.004)
with open("dist/index.html", "w") as f:
    f.write("<h1>logged</h1>")
"""


async def test_log_viewers_before_during_after_see_the_same_lines(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    """Viewers connecting before, during and after a build get seq 1..N, no gap, no duplicate."""
    repo = make_git_repo({"gen.py": BUILD_SCRIPT})
    await create_project(
        api, "chatty", repo, build={"build_command": "python3 gen.py", "output_dir": "dist"}
    )
    status, build = await api.call("POST", "/projects/chatty/builds", {})
    assert status == 202
    url = api.log_ws_url(build["id"])
    early_lines: list[dict[str, Any]] = []
    early = asyncio.create_task(read_ws(api.session, url, early_lines))
    deadline = asyncio.get_running_loop().time() + 60
    while not any(f["line"] == "line 50" for f in early_lines):
        assert not early.done(), early
        assert asyncio.get_running_loop().time() < deadline, "build never reached line 50"
        await asyncio.sleep(0.01)
    middle = asyncio.create_task(read_ws(api.session, url))
    (first, end1), (second, end2) = await asyncio.gather(early, middle)
    third, end3 = await read_ws(api.session, url)

    assert end1["status"] == end2["status"] == end3["status"] == "succeeded"
    for lines in (first, second, third):
        assert [f["seq"] for f in lines] == list(range(1, len(lines) + 1))
    assert first == second == third
    user_lines = [f["line"] for f in first if f["stream"] == "stdout"]
    assert user_lines == [f"line {i}" for i in range(1, 401)]
    assert any(f["stream"] == "system" for f in first)

    status, text = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200
    assert text.splitlines() == [f["line"] for f in first]


async def test_changed_domains_reach_the_edge_at_once(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    """PATCH of a live project's domains re-activates its build with the new hosts: the new
    domain is served, the dropped one no longer is, the build is not rebuilt."""
    await create_project(api, "hosts", make_git_repo(site("Many names")), domains=["old.example"])
    build, _ = await deploy(api, "hosts")
    assert "Many names" in (await api.edge_get("hosts", host="old.example"))[1]

    status, body = await api.call("PATCH", "/projects/hosts", {"domains": ["new.example"]})
    assert status == 200, body
    _, history = await api.call("GET", "/projects/hosts/deployments")
    newest = history["items"][0]
    assert (newest["build_id"], newest["trigger"]) == (build["id"], "api")
    await api.wait_deployment(newest["id"])

    assert "Many names" in (await api.edge_get("hosts", host="new.example"))[1]
    assert (await api.edge_get("hosts", host="old.example"))[0] == 404
    assert "Many names" in (await api.edge_get("hosts"))[1]
    _, builds = await api.call("GET", "/projects/hosts/builds")
    assert [b["id"] for b in builds["items"]] == [build["id"]]  # not rebuilt

    status, body = await api.call("PATCH", "/projects/hosts", {"domains": ["new.example"]})
    assert status == 200, body
    _, again = await api.call("GET", "/projects/hosts/deployments")
    assert len(again["items"]) == len(history["items"])  # unchanged domains: no redeploy
