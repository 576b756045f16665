"""Repository URLs and fetching one ref with gitpython."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from launchdeck.build_worker.clone import clone, git_env, git_secrets, parse_repo_url
from launchdeck.build_worker.errors import BuildFailed
from tests.support import GitRepoFactory, commit_files, git


async def fetch(repo: Path | str, ref: str, dest: Path) -> tuple[str, str, list[str]]:
    source = parse_repo_url(str(repo), allow_local=True)
    checkout = await clone(
        source, ref, dest, env=git_env(source, token=None, token_hosts=()), timeout_s=60
    )
    return checkout.commit_sha, checkout.commit_message, listing(dest)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != ".git")


@pytest.mark.parametrize(
    "url", ["/srv/repos/site", "./site", "file:///srv/repos/site", "FILE:///srv/x"]
)
def test_local_repositories_are_refused_unless_allowed(url: str) -> None:
    """Local paths and file:// URLs read the worker's disk: refused with the setting's name."""
    with pytest.raises(BuildFailed, match="LAUNCHDECK_ALLOW_LOCAL_REPOS=true"):
        parse_repo_url(url, allow_local=False)
    assert parse_repo_url(url, allow_local=True).local


@pytest.mark.parametrize(
    "url",
    ["https://github.com/acme/site.git", "ssh://git@host/acme/site", "git@github.com:acme/site"],
)
def test_remote_urls_are_accepted(url: str) -> None:
    """https, ssh and scp-like URLs are remote and need no permission."""
    assert not parse_repo_url(url, allow_local=False).local


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ext::sh -c touch% /tmp/pwned", "transport prefixes"),
        ("--upload-pack=touch /tmp/x", "Invalid repository URL"),
        ("ftp://example.com/repo", "Unsupported repository URL scheme 'ftp'"),
        ("", "no repository URL"),
    ],
)
def test_dangerous_or_unsupported_urls_are_refused(url: str, reason: str) -> None:
    """Transport helpers, option-like URLs and unknown schemes never reach git."""
    with pytest.raises(BuildFailed, match=reason):
        parse_repo_url(url, allow_local=True)


def test_password_in_url_is_hidden_and_masked() -> None:
    """A password inside the URL is shown as *** and listed for masking in the log."""
    source = parse_repo_url("https://bot:s3cr3t@git.example.com/acme/site.git", allow_local=False)
    assert source.display == "https://bot:***@git.example.com/acme/site.git"
    assert source.secrets == ("s3cr3t",)


def test_token_goes_only_to_its_hosts_in_a_header() -> None:
    """The git token is sent as an extraHeader for the configured hosts only, never in the URL."""
    github = parse_repo_url("https://github.com/acme/private.git", allow_local=False)
    other = parse_repo_url("https://evil.example/acme/x.git", allow_local=False)
    env = git_env(github, token="tok123", token_hosts=("github.com",))
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    basic = env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")
    assert base64.b64decode(basic) == b"x-access-token:tok123"
    assert "tok123" not in github.url
    assert git_env(other, token="tok123", token_hosts=("github.com",))["GIT_CONFIG_COUNT"] == "0"
    assert set(git_secrets("tok123")) == {"tok123", basic}
    assert env["GIT_TERMINAL_PROMPT"] == "0"


async def test_branch_tag_and_shas_are_checked_out(
    make_git_repo: GitRepoFactory, tmp_path: Path
) -> None:
    """A branch, a tag, a full sha and an abbreviated sha each check out the right commit."""
    repo = make_git_repo({"index.html": "v1"})
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "tag", "-a", "v1.0", "-m", "release")
    second = commit_files(repo, {"about.html": "about"}, "add about page\n\nlonger body")

    assert await fetch(repo, "main", tmp_path / "a") == (
        second, "add about page\n\nlonger body", ["about.html", "index.html"],
    )  # fmt: skip
    assert (await fetch(repo, "v1.0", tmp_path / "b"))[0] == first
    assert (await fetch(repo, first, tmp_path / "c"))[2] == ["index.html"]
    assert (await fetch(repo, first[:9], tmp_path / "d"))[0] == first
    assert (await fetch(f"file://{repo}", "main", tmp_path / "e"))[0] == second


async def test_missing_repository_is_a_readable_failure(tmp_path: Path) -> None:
    """A repository that does not exist fails saying so, with git's own words."""
    missing = tmp_path / "no-such-repo"
    with pytest.raises(BuildFailed) as info:
        await fetch(missing, "main", tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"Repository {missing} was not found")
    assert "does not appear to be a git repository" in message


async def test_missing_ref_is_a_readable_failure(
    make_git_repo: GitRepoFactory, tmp_path: Path
) -> None:
    """A branch (or sha) that is not in the repository fails naming the ref."""
    repo = make_git_repo({"index.html": "x"})
    with pytest.raises(BuildFailed, match=f"Ref 'nope' was not found in repository {repo}"):
        await fetch(repo, "nope", tmp_path / "a")
    with pytest.raises(BuildFailed, match="Ref 'deadbeef1' was not found"):
        await fetch(repo, "deadbeef1", tmp_path / "b")


@pytest.mark.parametrize("ref", ["--upload-pack=x", "main..dev", "a b", "x:y"])
async def test_option_like_refs_are_refused(tmp_path: Path, ref: str) -> None:
    """A ref git could read as an option or a refspec is refused before git runs."""
    with pytest.raises(BuildFailed, match="Invalid git ref"):
        await fetch(tmp_path, ref, tmp_path / "out")
