"""A git push webhook, end to end: a signed GitHub push of a commit that is no longer the
branch's head builds exactly that commit, which is then served; another branch's push deploys
a preview."""

from __future__ import annotations

import hashlib
import hmac
import json

import aiohttp

from tests.e2e.support import Api, create_project, site
from tests.support import GitRepoFactory, commit_files, git


async def post_push(api: Api, project: dict[str, str], ref: str, sha: str) -> dict[str, str]:
    body = json.dumps(
        {"ref": ref, "after": sha, "deleted": False, "head_commit": {"id": sha, "message": "m"}}
    ).encode()
    digest = hmac.new(project["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"e2e-{sha}",
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    url = f"{api.platform.api_url}/api/v1/hooks/github/{project['name']}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        answer = await r.json()
        assert r.status == 202, answer
    assert answer["status"] == "queued", answer
    return dict(answer)


async def test_a_push_webhook_builds_and_serves_the_pushed_commit(
    api: Api, make_git_repo: GitRepoFactory
) -> None:
    """The pushed sha is built even after the branch moved on; the site serves that commit."""
    repo = make_git_repo(site("First"))
    project = await create_project(api, "hooked", repo)
    pushed = commit_files(repo, site("Pushed"), "the pushed commit")
    commit_files(repo, site("Later"), "a later commit on main")

    answer = await post_push(api, project, "refs/heads/main", pushed)
    build = await api.wait_build(answer["build_id"])
    assert build["status"] == "succeeded", build
    assert build["commit_sha"] == pushed
    assert (build["ref"], build["trigger"], build["environment"]) == (
        "main",
        "webhook",
        "production",
    )
    await api.wait_build_deployment(build["id"])
    assert "<h1>Pushed</h1>" in (await api.edge_get("hooked"))[1]

    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit_files(repo, site("Feature"), "on a branch")
    preview = await api.wait_build(
        (await post_push(api, project, "refs/heads/feature", feature))["build_id"]
    )
    assert preview["status"] == "succeeded", preview
    assert (preview["commit_sha"], preview["environment"]) == (feature, "preview")
    deployment = await api.wait_build_deployment(preview["id"])
    assert deployment["environment"] == "preview"
    assert "<h1>Pushed</h1>" in (await api.edge_get("hooked"))[1]  # production unchanged
