"""Builds run under the worker's resource limits (`LAUNCHDECK_BUILD_LIMIT_*`, through the one
launcher of user code), sandboxed or not: a build sees them, cannot go past them, and the
default leaves room for what Node.js reserves (its `fetch()` needs ~10 GiB of address space)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import BUILD_LIMITS, Settings
from launchdeck.devservers import free_port
from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.limits import MIB
from launchdeck.libs.launcher.sandbox import SandboxMode, detect_sandbox
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.support import GitRepoFactory

# Prints the limits it runs under, then tries to go past the open-files one.
REPORT = """\
import resource
for name in ("RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC"):
    soft, hard = resource.getrlimit(getattr(resource, name))
    print(name, soft, hard, flush=True)
held = []
try:
    while True:
        held.append(open("report.py"))
except OSError as exc:
    print("stopped at", len(held), "open files:", exc.strerror, flush=True)
"""
TOML = """\
[build]
build_command = "python3 report.py"
output_dir = "."
"""
FETCH = """\
fetch("http://127.0.0.1:PORT/").then(
  () => console.log("answered"),
  (e) => console.log(e.cause ? "fetch ran: " + e.cause.code : "fetch broke: " + e.message),
);
"""


def test_the_limits_are_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`LAUNCHDECK_BUILD_LIMIT_AS_MB`, `_NOFILE`, `_NPROC`: the build default when unset, 0 for
    none, a negative value stops the worker at start naming the variable."""
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("LAUNCHDECK_STATE_DIR", str(tmp_path))
    for name in ("AS_MB", "NOFILE", "NPROC"):
        monkeypatch.delenv(f"LAUNCHDECK_BUILD_LIMIT_{name}", raising=False)
    assert Settings.from_env().limits == BUILD_LIMITS
    assert BUILD_LIMITS.address_space_bytes == 16 * 1024 * MIB
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_AS_MB", "0")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NOFILE", "512")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NPROC", "100")
    limits = Settings.from_env().limits
    assert (limits.address_space_bytes, limits.open_files, limits.processes) == (None, 512, 100)
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NPROC", "-1")
    with pytest.raises(Exception, match="LAUNCHDECK_BUILD_LIMIT_NPROC"):
        Settings.from_env()


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
async def test_a_build_runs_under_the_workers_limits(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    monkeypatch: pytest.MonkeyPatch,
    sandbox: SandboxMode,
) -> None:
    """The build sees exactly the configured limits, soft and hard (so it cannot raise them),
    in the sandbox and without it, and opening files stops at the limit."""
    if sandbox == "bwrap" and not detect_sandbox("auto").enabled:
        pytest.skip("bubblewrap does not work on this machine")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_AS_MB", "4096")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NOFILE", "64")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NPROC", "333")
    limits = Settings.from_env().limits
    worker = BuildWorker(js, make_settings(build_dir, sandbox=sandbox, limits=limits))
    cmd = command(make_git_repo({"report.py": REPORT, "launchdeck.toml": TOML, "index.html": "x"}))
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    out = [line.line for line in await log_lines(js, cmd.build_id) if line.stream == "stdout"]
    assert out[:3] == [
        f"RLIMIT_AS {4096 * MIB} {4096 * MIB}",
        "RLIMIT_NOFILE 64 64",
        "RLIMIT_NPROC 333 333",
    ]
    assert out[3].startswith("stopped at ")
    assert out[3].endswith("open files: Too many open files")
    assert int(out[3].split()[2]) < 64


@pytest.mark.parametrize(("address_space_mb", "works"), [(None, True), (8 * 1024, False)])
async def test_nodes_fetch_needs_the_default_address_space(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    address_space_mb: int | None,
    works: bool,
) -> None:
    """Node.js's `fetch()` (WebAssembly inside) works in a build with the default limits (16
    GiB of address space); with 8 GiB the same build dies (`RangeError: … Out of memory`)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    limits = BUILD_LIMITS
    if address_space_mb is not None:
        limits = replace(BUILD_LIMITS, address_space_bytes=address_space_mb * MIB)
    worker = BuildWorker(js, make_settings(build_dir, limits=limits))
    script = FETCH.replace("PORT", str(free_port()))
    toml = '[build]\nbuild_command = "node fetch.js"\noutput_dir = "."\n'
    cmd = command(make_git_repo({"fetch.js": script, "launchdeck.toml": toml, "index.html": "x"}))
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    lines = await log_lines(js, cmd.build_id)
    assert [line.line for line in lines if line.stream == "stdout"] == ["fetch ran: ECONNREFUSED"]
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == ("succeeded" if works else "failed"), events[-1].error
    broke = any("WebAssembly.instantiate(): Out of memory" in line.line for line in lines)
    assert broke is not works
