"""The `launchdeck` CLI as users run it, as a process, against the real platform: create,
deploy (log followed live, URL printed), logs by project / number / id, rollback, errors."""

from __future__ import annotations

from tests.e2e.support import Api, Platform, launchdeck, site
from tests.support import GitRepoFactory, commit_files


async def test_cli_deploys_follows_logs_and_rolls_back(
    api: Api, platform: Platform, make_git_repo: GitRepoFactory
) -> None:
    repo = make_git_repo(site("CLI one"))
    created = await launchdeck(platform, "projects", "create", "clisite", str(repo))
    assert created.code == 0, created
    assert created.out[-1] == "Deploy it with: launchdeck deploy clisite"
    empty = await launchdeck(platform, "builds", "clisite")
    assert (empty.code, empty.out) == (
        0,
        ["No builds yet. Start one with: launchdeck deploy clisite"],
    )

    first = await launchdeck(platform, "deploy", "clisite")
    assert first.code == 0, first
    url = f"http://clisite.localhost:{platform.edge_port}/"
    assert first.out[0].startswith("Build #1 ")
    assert first.out[1] == f"▶ Cloning {repo} (ref main)"
    assert any(line.startswith("✔ Build succeeded in ") for line in first.out)
    assert first.out[-1] == f"Live at {url}"
    assert "<h1>CLI one</h1>" in (await api.edge_get("clisite"))[1]

    commit_files(repo, site("CLI two"), "second version")
    second = await launchdeck(platform, "deploy", "clisite")
    assert second.code == 0, second
    assert "<h1>CLI two</h1>" in (await api.edge_get("clisite"))[1]

    # `logs` takes the project (its latest build), project#number or a build id, and prints
    # the same text as the HTTP log endpoint.
    _, builds = await api.call("GET", "/projects/clisite/builds")
    latest, oldest = builds["items"]
    for ref, build in (("clisite", latest), ("clisite#1", oldest), (oldest["id"], oldest)):
        printed = await launchdeck(platform, "logs", ref)
        status, text = await api.call("GET", f"/builds/{build['id']}/logs")
        assert (printed.code, status) == (0, 200), printed
        assert printed.out == text.splitlines()
        assert printed.out[-1].startswith("✔ Build succeeded in ")
    followed = await launchdeck(platform, "logs", "clisite#1", "-f")
    assert followed.code == 0, followed
    assert followed.out + followed.err == printed.out  # a site build logs system lines only
    missing = await launchdeck(platform, "logs", "clisite#9")
    assert (missing.code, missing.err) == (1, ["error: project 'clisite' has no build #9"])

    rollback = await launchdeck(platform, "rollback", "clisite")
    assert rollback.code == 0, rollback
    assert rollback.out[-1] == f"Live at {url}"
    assert "<h1>CLI one</h1>" in (await api.edge_get("clisite"))[1]

    # History, newest first: builds with number, status, ref and commit; deployments with
    # status, environment, build, and the URL of each.
    history = await launchdeck(platform, "builds", "clisite")
    assert history.code == 0, history
    assert history.out[0].split() == ["#", "STATUS", "REF", "COMMIT", "CREATED", "ID", "ERROR"]
    rows = [line.split() for line in history.out[1:]]
    assert [row[:4] for row in rows] == [
        ["2", "succeeded", "main", latest["commit_sha"][:7]],
        ["1", "succeeded", "main", oldest["commit_sha"][:7]],
    ]
    assert [row[6] for row in rows] == [latest["id"], oldest["id"]]
    shown = await launchdeck(platform, "deployments", "clisite", "--limit", "2")
    assert shown.code == 0, shown
    rows = [line.split() for line in shown.out[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("active", "production", oldest["id"]),
        ("rolled_back", "production", latest["id"]),
    ]
    assert all(url in line for line in shown.out[1:])

    queued = await launchdeck(platform, "deploy", "clisite", "--no-wait")
    assert queued.code == 0, queued
    assert queued.out[-1] == "Follow it with: launchdeck logs clisite#3 -f"
    third = await launchdeck(platform, "logs", "clisite#3", "-f")
    assert third.code == 0, third
    assert third.out[-1].startswith("✔ Build succeeded in ")

    unknown = await launchdeck(platform, "deploy", "nope")
    assert (unknown.code, unknown.err) == (1, ["error: Not Found: no project 'nope'"])
    bad = await launchdeck(platform, "projects", "create", "Bad Name", str(repo))
    assert bad.code == 1
    assert bad.err == [
        "error: Unprocessable Content: name: must be a slug: lowercase letters, digits and '-', "
        "starting with a letter or digit, at most 63 characters"
    ]
