"""Process apps built through `handle_build`, with real npm and pip installs from the registries
(one tiny dependency each), then run from the extracted release as the deploy-engine would."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import RELEASE_MANIFEST, Artifact, BuildRequested
from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.release import DEFAULT_PATH
from tests.build_worker.releases import answer, extract, manifest_of, running
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.build_worker.test_handler import fetch_artifact
from tests.support import GitRepoFactory, git

NODE_PACKAGE = {
    "name": "hello-node",
    "version": "1.0.0",
    "private": True,
    "scripts": {
        "start": "node server.js",
        # The build needs the dev dependency: it is there for the build, gone from the release.
        "build": "node -e \"require('is-number'); console.log('built with is-number')\"",
    },
    "dependencies": {"ms": "2.1.3"},
    "devDependencies": {"is-number": "7.0.0"},
}
NODE_SERVER = """\
const http = require("http");
const ms = require("ms");
http
  .createServer((req, res) => res.end(`hello from node: ${ms(60000)} ${process.env.NODE_ENV}`))
  .listen(Number(process.env.PORT), "127.0.0.1");
"""
WSGI_APP = """\
import sys


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"hello from python {sys.version_info[0]}".encode()]
"""
STDLIB_SERVER = """\
import http.server, os, sys


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"served by python {sys.version_info[0]}".encode())


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


async def build_ok(
    js: JetStreamContext, worker: BuildWorker, cmd: BuildRequested
) -> tuple[Artifact, list[str]]:
    """Build `cmd`; it must succeed. Its artifact and its log's text."""
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    text = [line.line for line in await log_lines(js, cmd.build_id)]
    assert events[-1].status == "succeeded", (events[-1].error, text)
    assert events[-1].artifact is not None
    return events[-1].artifact, text


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().removeprefix("v")


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


async def test_node_app_ships_pruned_node_modules_and_runs_npm_start(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A start script makes a process release: built with its dev dependency, which the prune
    then removes; node_modules travels; the manifest says `web: npm start`, and that command
    run from the extracted release answers, its dependency loaded."""
    repo = make_git_repo(
        {"package.json": json.dumps(NODE_PACKAGE, indent=2), "server.js": NODE_SERVER}
    )
    cmd = command(repo)

    artifact, text = await build_ok(js, worker, cmd)

    assert "▶ Detected Node.js app (package.json, npm) with a start script" in text
    assert "built with is-number" in text
    assert "▶ Prune dev dependencies: npm prune --omit=dev" in text
    assert any(t.startswith("✔ Prune dev dependencies finished in") for t in text)
    assert "▶ Processes: web: npm start" in text
    assert (artifact.kind, artifact.start_command, artifact.health_path) == (
        "process",
        "npm start",
        "/",
    )
    assert (artifact.processes, artifact.release_command) == ({"web": "npm start"}, None)
    data = await fetch_artifact(js, artifact.key)
    names = members(data)
    assert "node_modules/ms/index.js" in names
    assert not any(n.startswith("node_modules/is-number") for n in names)
    assert RELEASE_MANIFEST in names

    release = extract(data, tmp_path / "release")
    manifest = manifest_of(release)
    assert manifest.processes == {"web": "npm start"}
    assert manifest.runtime["node"] == node_version()
    assert manifest.env["NODE_ENV"] == "production"
    async with running(release, "web", tmp_path / "home") as app:
        assert await answer(app) == "hello from node: 1m production"


async def test_python_app_carries_its_dependencies_and_runs_from_the_release(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """requirements.txt: its dependency (waitress, pure Python) is installed inside the release,
    its console script relocated; the Procfile's web command, run from the extracted release
    with the machine's python3, serves."""
    repo = make_git_repo(
        {
            "requirements.txt": "waitress==3.0.2\n",
            "app.py": WSGI_APP,
            "Procfile": "web: waitress-serve --listen=127.0.0.1:$PORT app:app\n",
        }
    )
    cmd = command(repo)

    artifact, text = await build_ok(js, worker, cmd)

    assert "▶ Detected Python app (requirements.txt) with a Procfile (web)" in text
    assert any(t.startswith("▶ Install Python dependencies: python3 -m pip install") for t in text)
    assert artifact.processes == {"web": "waitress-serve --listen=127.0.0.1:$PORT app:app"}
    data = await fetch_artifact(js, artifact.key)
    names = members(data)
    assert ".launchdeck/site-packages/waitress/__init__.py" in names
    script = read_member(data, ".launchdeck/site-packages/bin/waitress-serve")
    assert script.startswith(b"#!/usr/bin/env python3\n")

    release = extract(data, tmp_path / "release")
    manifest = manifest_of(release)
    assert manifest.paths["PYTHONPATH"] == [".launchdeck/site-packages"]
    assert "python" in manifest.runtime
    async with running(release, "web", tmp_path / "home") as app:
        assert await answer(app) == "hello from python 3"


async def test_procfile_app_records_every_process_type_and_its_release_command(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """web, worker, release: every type in the manifest and the event, release apart."""
    procfile = (
        "# processes\n"
        "web: python3 server.py\n"
        "worker: python3 -c 'import time; time.sleep(3600)'\n"
        "release: python3 -c 'print(\"migrated\")'\n"
    )
    repo = make_git_repo({"Procfile": procfile, "server.py": STDLIB_SERVER})
    cmd = command(repo, health_path="healthz")

    artifact, text = await build_ok(js, worker, cmd)

    processes = {
        "web": "python3 server.py",
        "worker": "python3 -c 'import time; time.sleep(3600)'",
    }
    release_command = "python3 -c 'print(\"migrated\")'"
    assert "▶ Detected app with a Procfile (web, worker)" in text
    assert (
        f"▶ Processes: web: {processes['web']} · worker: {processes['worker']} · "
        f"release: {release_command}"
    ) in text
    assert (artifact.kind, artifact.processes, artifact.release_command) == (
        "process",
        processes,
        release_command,
    )
    assert (artifact.start_command, artifact.health_path) == ("python3 server.py", "/healthz")
    release = extract(await fetch_artifact(js, artifact.key), tmp_path / "release")
    manifest = manifest_of(release)
    assert (manifest.processes, manifest.release_command, manifest.health_path) == (
        processes,
        release_command,
        "/healthz",
    )


async def test_a_worker_only_app_has_no_web_process(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """A Procfile with only `worker:` is a process release with no start command or port."""
    repo = make_git_repo({"Procfile": "worker: sh -c 'while true; do sleep 1; done'\n"})
    cmd = command(repo)

    artifact, text = await build_ok(js, worker, cmd)

    assert artifact.kind == "process"
    assert artifact.processes == {"worker": "sh -c 'while true; do sleep 1; done'"}
    assert (artifact.start_command, artifact.health_path) == (None, None)
    release = extract(await fetch_artifact(js, artifact.key), tmp_path / "release")
    assert "web" not in manifest_of(release).processes
    assert not any("index.html" in t for t in text)  # not a static site missing its page


async def test_python_resolves_in_builds_and_releases_where_only_python3_is_installed(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a PATH with python3 and no python (the machine's /usr/bin here: Debian's
    externally-managed Python), `python` works in a build command and in the release's web
    command, and the app's dependency is installed into the release all the same."""
    monkeypatch.setenv("PATH", DEFAULT_PATH)
    assert not any((Path(d) / "python").exists() for d in DEFAULT_PATH.split(":"))
    worker = BuildWorker(js, make_settings(build_dir))
    server = STDLIB_SERVER.replace("import http.server", "import six, http.server").replace(
        "served by python", "served by python {six.PY3} on"
    )
    repo = make_git_repo(
        {
            "requirements.txt": "six==1.16.0\n",
            "Procfile": "web: python server.py\n",
            "server.py": server,
        }
    )
    probe = "python -c \"import sys, six; print('built by python', sys.version_info[0])\""
    cmd = command(repo, build_command=probe)

    artifact, text = await build_ok(js, worker, cmd)

    assert "built by python 3" in text
    release = extract(await fetch_artifact(js, artifact.key), tmp_path / "release")
    assert (release / ".launchdeck/site-packages/six.py").is_file()
    async with running(release, "web", tmp_path / "home", {"PATH": DEFAULT_PATH}) as app:
        assert await answer(app) == "served by python True on 3"


async def test_unknown_layouts_and_python_projects_without_a_command_fail_clearly(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """Nothing recognisable: the error lists what was looked for. A Python project with nothing
    to run says what it needs."""
    unknown = command(make_git_repo({"README.md": "just docs", "main.c": "int main(){}"}))
    python = command(make_git_repo({"requirements.txt": "waitress\n", "app.py": WSGI_APP}))
    for cmd in (unknown, python):
        assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    error = (await build_events(js, unknown.project_id, unknown.build_id))[-1].error
    assert error is not None
    assert error.startswith("Could not detect how to build this app in the repository root")
    for looked_for in ("launchdeck.toml", '"start" script', "Procfile", "requirements.txt"):
        assert looked_for in error
    error = (await build_events(js, python.project_id, python.build_id))[-1].error
    assert error == (
        "Found a Python project (requirements.txt) in the repository root but nothing to run: "
        'a Python app needs a Procfile with a "web:" (or "worker:") line, or start_command; '
        "a static site needs index.html or output_dir"
    )


async def test_pruning_a_restored_install_leaves_the_cache_entry_intact(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """The prune rewrites npm's record of the install in place; restored as a hardlink to the
    cache entry, that would damage the entry, and every other build would install again. Three
    builds of one lock file: installed once, restored twice, nothing damaged, all pruned."""
    worker = BuildWorker(js, make_settings(tmp_path / "builds", cache_dir=tmp_path / "cache"))
    repo = make_git_repo({"package.json": json.dumps(NODE_PACKAGE, indent=2)})
    lock_file(repo)
    cmd = command(repo)

    logs = []
    for _ in range(3):
        artifact, text = await build_ok(js, worker, msgspec.structs.replace(cmd, build_id=new_id()))
        logs.append(text)
        names = members(await fetch_artifact(js, artifact.key))
        assert "node_modules/ms/index.js" in names
        assert not any(n.startswith("node_modules/is-number") for n in names)

    assert "▶ Install: npm ci" in logs[0]
    for text in logs[1:]:
        assert any(t.startswith("✔ Dependencies restored from the preview cache") for t in text)
        assert "▶ Install: npm ci" not in text
        assert not any("damaged" in t for t in text), text


def lock_file(repo: Path) -> None:
    """package-lock.json for the repository's package.json, committed (no install)."""
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lock file")


def new_id() -> str:
    return str(uuid.uuid4())
