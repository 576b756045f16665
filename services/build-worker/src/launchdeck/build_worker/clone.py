"""Fetching one ref of a git repository into a fresh directory, with gitpython.

A branch or tag is fetched shallow (depth 1, that ref only); a full 40-hex sha is fetched the same
way (git's protocol v2 allows it), and anything that cannot be fetched by name (an abbreviated sha,
a server refusing sha wants) falls back to fetching every branch and tag, then checking out the
ref. git runs as a killable child process, so a timeout or a worker shutdown stops it at once.

A token for private https repositories reaches git only as an `http.<host>.extraHeader` entry in
git's environment (`GIT_CONFIG_*`), scoped to the configured hosts: never in the URL, the command
line or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from git import Repo
from git.exc import BadName

from launchdeck.build_worker.errors import BuildFailed, BuildTimedOut

REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git", "git+ssh", "ssh+git"})
_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?[\w.-]+:(?!//)")
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")
_REF = re.compile(r"^[A-Za-z0-9._/@+-]+$")
MAX_COMMIT_MESSAGE = 4096


class GitFailed(Exception):
    """A git command exited non-zero; `stderr` is git's own text."""

    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"git {args[0]} exited with {code}")
        self.stderr = stderr


@dataclass(frozen=True)
class RepoSource:
    """A validated repository location: what git fetches and what humans are shown."""

    url: str  # passed to git (may carry user:password from the project's URL)
    display: str  # the same URL with any password replaced by ***
    local: bool
    secrets: tuple[str, ...] = ()  # values found in the URL that must be masked in logs


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit_sha: str
    commit_message: str


def parse_repo_url(url: str, *, allow_local: bool) -> RepoSource:
    """Classify `url` (remote URL, scp-like ssh, local path or file://) or refuse it readably."""
    url = url.strip()
    if not url:
        raise BuildFailed("The project has no repository URL")
    if url.startswith("-") or any(ord(c) < 32 for c in url):
        raise BuildFailed(f"Invalid repository URL {url!r}")
    head = url.split("/", 1)[0]
    if "::" in head:
        # git's transport helpers (`ext::`, `fd::`) run arbitrary commands on the worker.
        raise BuildFailed(f"Unsupported repository URL {url!r}: transport prefixes are not allowed")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file" or (not scheme and not _SCP_LIKE.match(url)):
        if not allow_local:
            raise BuildFailed(
                f"Local repositories are not allowed on this worker ({url}): use an https or ssh "
                "URL, or set LAUNCHDECK_ALLOW_LOCAL_REPOS=true on the build-worker"
            )
        return RepoSource(url=url, display=url, local=True)
    if scheme and scheme not in REMOTE_SCHEMES:
        raise BuildFailed(
            f"Unsupported repository URL scheme {parts.scheme!r} in {url!r} "
            f"(supported: {', '.join(sorted(REMOTE_SCHEMES))}, file:// when allowed)"
        )
    if scheme and parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        display = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return RepoSource(url=url, display=display, local=False, secrets=(parts.password,))
    return RepoSource(url=url, display=url, local=False)


def check_ref(ref: str) -> str:
    """The ref to fetch (`HEAD` when empty); refuses anything git could read as an option."""
    ref = ref.strip() or "HEAD"
    if ref.startswith("-") or ".." in ref or not _REF.match(ref):
        raise BuildFailed(f"Invalid git ref {ref!r}")
    return ref


def token_header(token: str) -> str:
    # Basic auth with a fixed user name is what GitHub, GitLab and Gitea accept for tokens.
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {basic}"


def git_env(source: RepoSource, *, token: str | None, token_hosts: Sequence[str]) -> dict[str, str]:
    """Environment for git: never prompt (a prompt would hang the build), token by header."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "GIT_CONFIG_COUNT": "0",
    }
    parts = urlsplit(source.url)
    host = (parts.hostname or "").lower()
    if token and parts.scheme.lower() == "https" and host in token_hosts:
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"http.https://{host}/.extraHeader",
                "GIT_CONFIG_VALUE_0": token_header(token),
            }
        )
    return env


def git_secrets(token: str | None) -> tuple[str, ...]:
    """Values derived from the token that must never appear in a log line."""
    if not token:
        return ()
    return (token, token_header(token).removeprefix("Authorization: Basic "))


async def _git(repo: Repo, args: Sequence[str], env: Mapping[str, str], deadline: float) -> None:
    """Run `git <args>` in `repo`; kill it on timeout or cancellation; raise on failure."""
    handle = repo.git.execute(["git", *args], as_process=True, env=dict(env))
    proc = handle.proc
    assert proc is not None  # as_process always starts one
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            _, stderr = await asyncio.to_thread(proc.communicate)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.to_thread(proc.wait)
        raise
    if proc.returncode != 0:
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr or "")
        raise GitFailed(args, proc.returncode, text)


def _fatal_lines(exc: GitFailed) -> str:
    lines = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
    picked = [ln for ln in lines if ln.startswith(("fatal:", "remote:", "error:"))] or lines
    return " ".join(picked)[:500]


def _not_found_ref(detail: str) -> bool:
    return (
        "couldn't find remote ref" in detail
        or "not our ref" in detail
        or ("unadvertised object" in detail)
    )


def describe_failure(source: RepoSource, ref: str, exc: GitFailed) -> str:
    """Turn git's stderr into one readable sentence (plus git's own words for detail)."""
    detail = _fatal_lines(exc).replace("\n", " ")
    lowered = detail.lower()
    where = source.display
    if _not_found_ref(lowered) or "did not match any" in lowered or "unknown revision" in lowered:
        reason = f"Ref {ref!r} was not found in repository {where}"
    elif (
        "does not appear to be a git repository" in lowered
        or "repository not found" in lowered
        or ("repository" in lowered and "not found" in lowered)
        or "does not exist" in lowered
    ):
        reason = f"Repository {where} was not found (or is not a git repository)"
    elif "could not read username" in lowered or "authentication failed" in lowered:
        reason = (
            f"Repository {where} needs credentials or does not exist "
            "(private https repositories need LAUNCHDECK_GIT_TOKEN on the build-worker)"
        )
    elif "could not resolve host" in lowered:
        reason = f"Could not resolve the host of {where}"
    elif "permission denied" in lowered:
        reason = f"Access to repository {where} was denied"
    else:
        reason = f"Could not fetch {ref!r} from {where}"
    return f"{reason}. git said: {detail}" if detail else reason


def _resolve_commit(repo: Repo, source: RepoSource, ref: str) -> str:
    try:
        return str(repo.commit(ref).hexsha)
    except (BadName, ValueError):
        raise BuildFailed(f"Ref {ref!r} was not found in repository {source.display}") from None


async def clone(
    source: RepoSource,
    ref: str,
    dest: Path,
    *,
    env: Mapping[str, str],
    timeout_s: float,
) -> Checkout:
    """Fetch `ref` of `source` into `dest` (created) and check it out detached."""
    ref = check_ref(ref)
    deadline = time.monotonic() + timeout_s
    repo = Repo.init(dest)
    try:
        try:
            await _git(
                repo,
                ["fetch", "--quiet", "--depth=1", "--no-tags", "--", source.url, ref],
                env,
                deadline,
            )
            target = "FETCH_HEAD"
        except GitFailed as exc:
            if not (_HEX.match(ref) and _not_found_ref(_fatal_lines(exc).lower())):
                raise
            # An abbreviated sha (or a server refusing sha wants): fetch everything, then look.
            await _git(
                repo,
                [
                    "fetch",
                    "--quiet",
                    "--",
                    source.url,
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                env,
                deadline,
            )
            target = await asyncio.to_thread(_resolve_commit, repo, source, ref)
        await _git(repo, ["checkout", "--quiet", "--detach", target], env, deadline)
        commit = repo.head.commit
        message = str(commit.message).strip()[:MAX_COMMIT_MESSAGE]
        return Checkout(path=dest, commit_sha=commit.hexsha, commit_message=message)
    except GitFailed as exc:
        raise BuildFailed(describe_failure(source, ref, exc)) from None
    except TimeoutError:
        raise BuildTimedOut(f"while cloning {source.display}") from None
    finally:
        repo.close()
