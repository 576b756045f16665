"""yarn and pnpm on a worker that does not have them: the project's own Yarn, else corepack."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.package_managers import invocation
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery
from tests.build_worker.test_handler import fetch_artifact
from tests.support import GitRepoFactory

RELEASE = ".yarn/releases/yarn-9.9.9.cjs"
# Stands in for a checked-in Yarn release: node runs it with yarn's arguments.
FAKE_YARN = """\
const fs = require("fs");
const args = process.argv.slice(2);
console.log("fake yarn " + args.join(" "));
if (args[0] === "install") {
  fs.mkdirSync("node_modules/left-pad", { recursive: true });
  fs.writeFileSync("node_modules/left-pad/index.js", "module.exports = 1");
} else if (args[0] === "run" && args[1] === "build") {
  fs.mkdirSync("dist", { recursive: true });
  fs.writeFileSync("dist/index.html", "<h1>built by yarn</h1>");
} else {
  process.exit(2);
}
"""


def bin_dir(path: Path, *programs: str) -> str:
    """A PATH holding only `programs`: stand-ins, or links to the real ones where they exist."""
    path.mkdir(parents=True, exist_ok=True)
    for program in programs:
        real = shutil.which(program)
        if real is not None:
            (path / program).symlink_to(real)
        else:
            (path / program).write_text("#!/bin/sh\nexit 0\n")
            (path / program).chmod(0o755)
    return str(path)


def yarn_project(root: Path, yarnrc: str = f"yarnPath: {RELEASE}\n") -> Path:
    (root / ".yarn/releases").mkdir(parents=True)
    (root / RELEASE).write_text(FAKE_YARN)
    (root / ".yarnrc.yml").write_text(yarnrc)
    (root / "package.json").write_text(json.dumps({"packageManager": "yarn@9.9.9+sha512.abc"}))
    return root


def test_an_installed_program_runs_as_it_is(tmp_path: Path) -> None:
    path = bin_dir(tmp_path / "bin", "yarn", "node", "corepack")
    root = yarn_project(tmp_path / "repo")
    how = invocation(["yarn", "install"], root, {"PATH": path})
    assert (how.argv, how.env, how.note) == (["yarn", "install"], {}, None)
    other = invocation(["make", "site"], root, {"PATH": ""})  # not ours to resolve
    assert other.argv == ["make", "site"]


def test_missing_yarn_runs_the_projects_own_release_with_node(tmp_path: Path) -> None:
    path = bin_dir(tmp_path / "bin", "node", "corepack")
    root = yarn_project(tmp_path / "repo")
    how = invocation(["yarn", "install", "--immutable"], root, {"PATH": path})
    assert how.argv == ["node", str((root / RELEASE).resolve()), "install", "--immutable"]
    assert how.note == f"yarn is not installed on this worker: running the project's own {RELEASE}"


@pytest.mark.parametrize(
    "yarnrc",
    [
        "yarnPath: ../outside.cjs\n",  # out of the repository: never run
        "yarnPath: .yarn/releases/missing.cjs\n",
        "nodeLinker: node-modules\n",
    ],
)
def test_without_a_usable_release_corepack_fetches_the_declared_version(
    tmp_path: Path, yarnrc: str
) -> None:
    (tmp_path / "outside.cjs").write_text(FAKE_YARN)
    path = bin_dir(tmp_path / "bin", "node", "corepack")
    root = yarn_project(tmp_path / "repo", yarnrc)
    how = invocation(["yarn", "run", "build"], root, {"PATH": path})
    assert how.argv == ["corepack", "yarn", "run", "build"]
    assert how.env["COREPACK_ENABLE_DOWNLOAD_PROMPT"] == "0"
    assert how.env["COREPACK_NPM_REGISTRY"] == "https://registry.npmjs.org"
    assert how.note == (
        "yarn is not installed on this worker: running it through corepack "
        "(yarn@9.9.9 from package.json)"
    )


def test_corepack_uses_the_build_environments_registry(tmp_path: Path) -> None:
    """A mirror set for builds (COREPACK_NPM_REGISTRY passed through) is where corepack goes."""
    path = bin_dir(tmp_path / "bin", "corepack")
    (tmp_path / "repo").mkdir()
    env = {"PATH": path, "COREPACK_NPM_REGISTRY": "https://npm.mirror.example"}
    how = invocation(["pnpm", "install", "--frozen-lockfile"], tmp_path / "repo", env)
    assert how.argv == ["corepack", "pnpm", "install", "--frozen-lockfile"]
    assert how.env["COREPACK_NPM_REGISTRY"] == "https://npm.mirror.example"
    assert how.note == "pnpm is not installed on this worker: running it through corepack"


def test_missing_pnpm_without_corepack_is_a_clear_failure(tmp_path: Path) -> None:
    path = bin_dir(tmp_path / "bin", "node")
    (tmp_path / "repo").mkdir()
    with pytest.raises(BuildFailed, match="pnpm is not installed on this build worker"):
        invocation(["pnpm", "install"], tmp_path / "repo", {"PATH": path})


async def test_yarn_berry_project_builds_on_a_worker_without_yarn(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Vite project on Yarn 4 (berry lock file, checked-in release): installed with
    --immutable and built by its own Yarn, with the reason in the log; dist/ ships."""
    repo = make_git_repo(
        {
            "package.json": json.dumps(
                {"scripts": {"build": "vite build"}, "devDependencies": {"vite": "^7"}}
            ),
            "yarn.lock": '__metadata:\n  version: 8\n\n"vite@npm:^7":\n  version: 7.0.0\n',
            ".yarnrc.yml": f"yarnPath: {RELEASE}\nnodeLinker: node-modules\n",
            RELEASE: FAKE_YARN,
            "index.html": "<script type=module src=/src/main.js></script>",
        }
    )
    monkeypatch.setenv("PATH", bin_dir(tmp_path / "bin", "node", "git"))
    cmd = command(repo)

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    text = [line.line for line in await log_lines(js, cmd.build_id)]
    start = text.index("▶ Install: yarn install --immutable")
    assert text[start + 1 : start + 3] == [
        f"▶ yarn is not installed on this worker: running the project's own {RELEASE}",
        "fake yarn install --immutable",
    ]
    assert "fake yarn run build" in text
    assert any(t.startswith("✔ Packaged 1 file (") for t in text)  # dist/index.html alone
    done = (await build_events(js, cmd.project_id, cmd.build_id))[-1]
    assert done.status == "succeeded", done.error
    assert done.artifact is not None
    data = await fetch_artifact(js, done.artifact.key)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        index = tar.extractfile("index.html")
        assert index is not None
        assert index.read() == b"<h1>built by yarn</h1>"
