"""Builds in the sandbox (bubblewrap) and without it: what a build can reach, what it leaves
running, and that an unsandboxed build says so. Real builds through `handle_build`, real bwrap,
real processes; escaped processes are found on this machine by their command line."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import BuildRequested
from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.sandbox import Sandbox, SandboxMode, detect_sandbox, toolchain_paths
from launchdeck.libs.processes import process_alive
from tests.build_worker.processes import wait_gone
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.polling import eventually
from tests.support import GitRepoFactory

# Leaves two processes behind that hold its stdout and stderr and escaped its process group:
# `setsid sleep` (a new session) and a daemon (fork, setsid, fork again). Then waits for the
# test's "go" (a file in its workspace) and exits.
ESCAPE = """\
import os, subprocess, sys, time
subprocess.Popen(["setsid", "sleep", sys.argv[1]])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", sys.argv[2]])
    os._exit(0)
print("spawned", flush=True)
stop_at = time.monotonic() + 60
while not os.path.exists("go") and time.monotonic() < stop_at:
    time.sleep(0.02)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>escaped</h1>")
print("done", flush=True)
"""

# Tries every path it is given and prints one JSON line per try: what happened, or the error.
PROBE = """\
import json, os, socket, sys
targets = json.loads(open("targets.json").read())
def attempt(kind, path):
    path = os.path.expandvars(path)  # $HOME, $npm_config_cache: the build's own values
    try:
        if kind == "read":
            with open(path, "rb") as f:
                return "read " + repr(f.read(200))
        if kind == "list":
            return "listed " + repr(sorted(os.listdir(path)))
        if kind == "connect":
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return "connected"
        if kind == "write":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("x")
            return "wrote"
    except Exception as exc:
        return type(exc).__name__
for name, kind, path in targets:
    print(json.dumps({"name": name, "result": attempt(kind, path)}), flush=True)
print(json.dumps({"name": "uid", "result": os.getuid()}), flush=True)
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps({"name": "processes", "result": pids}), flush=True)
"""

NOTHING = {"FileNotFoundError", "PermissionError", "ConnectionRefusedError", "NotADirectoryError"}


def running(token: str) -> list[int]:
    """`sleep` processes on this machine whose argument is `token`, seen from outside any
    sandbox (with their real pids)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        argv = cmdline.split(b"\0")
        if argv[0].endswith(b"sleep") and token.encode() in argv and process_alive(int(name)):
            found.append(int(name))
    return found


def tokens() -> tuple[str, str]:
    """Two `sleep` durations no other process on this machine is using."""
    n = random.randrange(10**6)
    return f"1001.{n}", f"1002.{n}"


def the_checkout(build_dir: Path) -> Path:
    """The running attempt's checkout (its commands' working directory)."""
    (workdir,) = [d for d in build_dir.iterdir() if d.is_dir()]
    return workdir / "src"


def bwrap_sandbox() -> Sandbox:
    """The sandbox, which this machine must have (`make test` installs bubblewrap)."""
    sandbox = detect_sandbox("auto")
    assert sandbox.enabled, f"no sandbox on this machine: {sandbox.reason}"
    return sandbox


@pytest.mark.parametrize("mode", ["bwrap", "none"])
async def test_an_escapee_holding_stdout_neither_hangs_the_build_nor_outlives_it(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    mode: SandboxMode,
) -> None:
    """`setsid sleep` and a double-forked daemon, both holding the build's stdout: the build
    step ends as soon as its command does (not at its time limit of 120 s), and both are gone
    afterwards — in the sandbox (its PID namespace) and without one (its marker)."""
    setsid_token, daemon_token = tokens()
    cmd = command(
        make_git_repo({"escape.py": ESCAPE}),
        build_command=f"python3 escape.py {setsid_token} {daemon_token}",
        output_dir="dist",
    )
    worker = BuildWorker(js, make_settings(build_dir, sandbox=mode))
    build = asyncio.create_task(worker.handle_build(cmd, delivery()))
    try:
        setsid_pids = await eventually("the setsid escapee", lambda: running(setsid_token))
        daemon_pids = await eventually("the daemon", lambda: running(daemon_token))
        (the_checkout(build_dir) / "go").touch()
        went = time.monotonic()
        outcome = await asyncio.wait_for(build, 20)
        took = time.monotonic() - went
    finally:
        build.cancel()
    assert outcome is Outcome.ACK
    assert took < 10, f"the build ended {took:.1f}s after its command"
    for pid in setsid_pids + daemon_pids:
        await wait_gone(pid, 3.0)
    lines = await log_lines(js, cmd.build_id)
    assert [line.line for line in lines if line.stream == "stdout"] == ["spawned", "done"]
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error


async def test_a_cancelled_sandboxed_build_leaves_no_process(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """A worker shutting down mid-build (cancellation) kills the sandbox with everything in it,
    the escaped processes included."""
    setsid_token, daemon_token = tokens()
    cmd = command(
        make_git_repo({"escape.py": ESCAPE}),
        build_command=f"python3 escape.py {setsid_token} {daemon_token}",
        output_dir="dist",
    )
    worker = BuildWorker(js, make_settings(build_dir), bwrap_sandbox())
    build = asyncio.create_task(worker.handle_build(cmd, delivery()))
    try:
        await eventually("the setsid escapee", lambda: running(setsid_token))
        await eventually("the daemon", lambda: running(daemon_token))
        pids = running(setsid_token) + running(daemon_token)
    finally:
        build.cancel()
    await asyncio.gather(build, return_exceptions=True)
    for pid in pids:
        await wait_gone(pid, 5.0)
    assert await asyncio.to_thread(lambda: list(build_dir.iterdir())) == []


class PlatformState:
    """A state directory laid out as `make dev` lays it out (cli/devstate.py, devservers), with
    real listening sockets where Postgres and Caddy put theirs, and the build-worker's build and
    cache directories inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dev_json = root / "dev.json"
        self.secret_key = root / "secret.key"
        self.postgres_socket = root / "postgres" / "data" / ".s.PGSQL.5432"
        self.caddy_socket = root / "caddy" / "admin.sock"
        self.releases = root / "releases"
        self.build_dir = root / "builds"
        self.cache_dir = root / "build-cache"
        self.other_build = self.build_dir / f"{uuid.uuid4()}-1-0123abcd"
        self._sockets: list[socket.socket] = []

    def create(self) -> None:
        self.root.mkdir(parents=True)
        self.dev_json.write_text(json.dumps({"admin_token": "ADMIN-TOKEN-s3cret"}))
        self.dev_json.chmod(0o600)
        self.secret_key.write_text("SECRET-KEY-s3cret\n")
        self.secret_key.chmod(0o600)
        for path in (self.postgres_socket, self.caddy_socket):
            path.parent.mkdir(parents=True)
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(path))
            server.listen()
            self._sockets.append(server)
        (self.releases / "blog" / "b1").mkdir(parents=True)
        (self.releases / "blog" / "b1" / "index.html").write_text("RELEASE-s3cret")
        (self.other_build / "src").mkdir(parents=True)
        (self.other_build / "src" / ".env").write_text("OTHER-BUILD-s3cret")

    def close(self) -> None:
        for server in self._sockets:
            server.close()


@pytest.fixture
def platform_state(tmp_path: Path) -> Iterator[PlatformState]:
    state = PlatformState(tmp_path / "state")
    state.create()
    yield state
    state.close()


def probe_repo(make_git_repo: GitRepoFactory, targets: list[tuple[str, str, str]]) -> Path:
    return make_git_repo(
        {"probe.py": PROBE, "targets.json": json.dumps(targets), "index.html": "<h1>probe</h1>"}
    )


async def probe_results(
    js: JetStreamContext, worker: BuildWorker, cmd: BuildRequested
) -> dict[str, object]:
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    lines = await log_lines(js, cmd.build_id)
    assert not any("s3cret" in line.line for line in lines)
    results = {}
    for line in lines:
        if line.stream == "stdout":
            entry = json.loads(line.line)
            results[entry["name"]] = entry["result"]
    return results


async def test_a_sandboxed_build_reaches_none_of_the_platforms_state(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    platform_state: PlatformState,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """dev.json, secret.key, the Postgres and Caddy sockets, releases, another build's
    directory, the worker's own process, environment and source: nothing. Its workspace, its
    /tmp, HOME and download cache: writable. The toolchain on its PATH: read-only. It runs as
    uid 1000, seeing only its own processes."""
    state = platform_state
    scratch = f"/tmp/build-scratch-{uuid.uuid4().hex}"
    monkeypatch.setenv("LAUNCHDECK_TEST_WORKER_SECRET", "WORKER-ENV-s3cret")
    tools = tmp_path / "tools"  # a toolchain directory of the worker's PATH
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    targets = [
        ("dev.json", "read", str(state.dev_json)),
        ("secret.key", "read", str(state.secret_key)),
        ("state dir", "list", str(state.root)),
        ("postgres socket", "connect", str(state.postgres_socket)),
        ("caddy socket", "connect", str(state.caddy_socket)),
        ("releases", "list", str(state.releases)),
        ("other build", "read", str(state.other_build / "src" / ".env")),
        ("builds", "list", str(state.build_dir)),
        ("worker environ", "read", f"/proc/{os.getpid()}/environ"),
        ("platform source", "read", __file__),
        ("workspace", "write", "written-by-the-build/file"),
        ("tmp", "write", f"{scratch}/file"),
        ("home", "write", "$HOME/.config/x"),
        ("download cache", "write", "$npm_config_cache/probe"),
        ("toolchain", "write", str(tools / "planted-by-a-build")),
    ]
    cmd = command(
        probe_repo(make_git_repo, targets),
        install_command="python3 probe.py",
        output_dir=".",
    )
    settings = make_settings(
        state.build_dir, cache_dir=state.cache_dir, state_dir=state.root, sandbox="bwrap"
    )
    results = await probe_results(js, BuildWorker(js, settings), cmd)

    for name in (
        "dev.json", "secret.key", "postgres socket", "caddy socket", "releases",
        "other build", "worker environ", "platform source",
    ):  # fmt: skip
        assert results[name] in NOTHING, f"{name}: {results[name]}"
    # Of the state and build directories it sees only the empty frame its own directories are
    # mounted in: `builds/<its attempt>/`, `build-cache/`.
    assert results["state dir"] == "listed ['build-cache', 'builds']"
    assert re.fullmatch(rf"listed \['{cmd.build_id}-1-[0-9a-f]{{8}}'\]", str(results["builds"]))
    for name in ("workspace", "tmp", "home", "download cache"):
        assert results[name] == "wrote", f"{name}: {results[name]}"
    assert results["toolchain"] in {"OSError", "PermissionError"}  # read-only
    assert not (tools / "planted-by-a-build").exists()
    assert not await asyncio.to_thread(Path(scratch).exists)  # its /tmp was its own
    assert results["uid"] == 1000
    assert isinstance(results["processes"], list)
    assert len(results["processes"]) <= 3  # bwrap's init, the probe (and maybe its shell)


async def test_without_the_sandbox_the_same_build_reads_the_state(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    platform_state: PlatformState,
) -> None:
    """The control for the test above (and what every build could do before the sandbox):
    unsandboxed, the probe reads dev.json and connects to Caddy's socket — and the log says, in
    its first line, that the build runs without a sandbox."""
    state = platform_state
    targets = [
        ("dev.json", "read", str(state.dev_json)),
        ("caddy socket", "connect", str(state.caddy_socket)),
    ]
    cmd = command(probe_repo(make_git_repo, targets), build_command="python3 probe.py")
    settings = make_settings(state.build_dir, state_dir=state.root, sandbox="none")
    worker = BuildWorker(js, settings)
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    lines = await log_lines(js, cmd.build_id)
    stdout = [json.loads(line.line) for line in lines if line.stream == "stdout"]
    results = {entry["name"]: entry["result"] for entry in stdout}
    assert results["dev.json"].startswith('read b\'{"admin_token"')
    assert results["caddy socket"] == "connected"
    assert lines[0].stream == "system"
    assert lines[0].line.startswith(
        "⚠ This build runs WITHOUT a sandbox (LAUNCHDECK_BUILD_SANDBOX=none)"
    )


async def test_a_worker_without_bwrap_says_so_in_every_build_log(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """`auto` on a machine without bubblewrap (here: a PATH without bwrap) runs builds, and
    the first line of each one's log says they are not sandboxed, and why."""
    (tmp_path / "no-bwrap").mkdir()
    sandbox = detect_sandbox("auto", path=str(tmp_path / "no-bwrap"))
    assert not sandbox.enabled
    worker = BuildWorker(js, make_settings(build_dir), sandbox)
    for _ in range(2):
        cmd = command(make_git_repo({"index.html": "<h1>hi</h1>"}))
        assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
        lines = await log_lines(js, cmd.build_id)
        assert lines[0].line == (
            "⚠ This build runs WITHOUT a sandbox (bubblewrap (bwrap) is not installed on this "
            "worker): its commands run as the build-worker's user and can read whatever that "
            "user can, the platform's own state included. Install bubblewrap on the worker (see "
            "docs/operations.md)"
        )


def test_toolchains_are_shown_but_never_a_home_or_the_platforms_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build sees each PATH directory and the prefix above a tool's `bin/` (its libraries),
    but not that prefix when it is a home directory or holds the platform's state: then only
    the `bin/` itself."""
    prefix = tmp_path / "node-22"
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for bin_dir in (prefix / "bin", home / "bin"):
        bin_dir.mkdir(parents=True)
        (bin_dir / "node").write_text("#!/bin/sh\n")
        (bin_dir / "node").chmod(0o755)
    assert toolchain_paths(str(prefix / "bin")) == [prefix]
    assert toolchain_paths(str(prefix / "bin"), protected=[prefix / "state"]) == [prefix / "bin"]
    assert toolchain_paths(str(home / "bin")) == [home / "bin"]
