"""The bundled example site `launchdeck dev` deploys, so a newcomer sees a live site at once.

`examples/static-site/` is mirrored into `<state dir>/example-repo` (a git repository the
build-worker can clone, as a local path) and committed when it is new or changed, so the
repository always holds the checkout's current example; `deploy_example` creates the `example`
project from it and deploys it through the API, like any user's project.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import shutil
import subprocess
from pathlib import Path

from launchdeck.cli.client import ApiError, LaunchdeckClient
from launchdeck.cli.commands import deploy_and_follow
from launchdeck.cli.output import Terminal
from launchdeck.contracts.api import ProjectCreate

EXAMPLE_PROJECT = "example"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[4]

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Launchdeck",
    "GIT_AUTHOR_EMAIL": "dev@launchdeck.invalid",
    "GIT_COMMITTER_NAME": "Launchdeck",
    "GIT_COMMITTER_EMAIL": "dev@launchdeck.invalid",
}


def find_example_source() -> Path | None:
    """`examples/static-site` of this checkout, else of the current directory."""
    for root in (_CHECKOUT_ROOT, Path.cwd()):
        candidate = root / "examples" / "static-site"
        if (candidate / "index.html").is_file():
            return candidate
    return None


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env={**os.environ, **_GIT_IDENTITY},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def _mirror(source: Path, target: Path) -> None:
    """Make `target` (but its `.git`) hold exactly the files of `source`."""
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    for path in sorted(target.rglob("*"), reverse=True):
        rel = path.relative_to(target)
        if rel.parts[0] == ".git":
            continue
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for rel in wanted:
        src, dst = source / rel, target / rel
        if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def sync_example_repo(source: Path, repo: Path) -> bool:
    """Mirror `source` into the git repository `repo` (created on branch `main` if missing)
    and commit; return True when a new commit was made."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
    _mirror(source, repo)
    _git(repo, "add", "-A")
    if not _git(repo, "status", "--porcelain").strip():
        return False
    _git(repo, "commit", "-q", "-m", "Example site from examples/static-site")
    return True


def head_commit(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD").strip()


def example_url(edge_port: int) -> str:
    return f"http://{EXAMPLE_PROJECT}.localhost:{edge_port}/"


async def deploy_example(client: LaunchdeckClient, term: Terminal, state: Path) -> bool:
    """Create and deploy the example project; skip the build when it is already live and its
    source has not changed. Return True when the example is live."""
    source = find_example_source()
    if source is None:
        term.warn("examples/static-site not found; not deploying the example")
        return False
    repo = state / "example-repo"
    changed = await asyncio.to_thread(sync_example_repo, source, repo)
    try:
        await client.get_project(EXAMPLE_PROJECT)
    except ApiError as exc:
        if exc.status != 404:
            raise
        await client.create_project(
            ProjectCreate(name=EXAMPLE_PROJECT, repo_url=str(repo), branch="main")
        )
        term.info(f"created project {EXAMPLE_PROJECT} from {repo}")
    if not changed:
        deployments = await client.list_deployments(EXAMPLE_PROJECT)
        if any(d.status == "active" for d in deployments):
            term.info("the example is already deployed and unchanged; not rebuilding it")
            return True
    result = await deploy_and_follow(client, term, project=EXAMPLE_PROJECT, ref=None)
    if not result.ok:
        term.error(f"the example did not deploy: {result.reason}")
    return result.ok
