"""A whole build through `handle_build`, against the real NATS server and real git repositories."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import tarfile
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.logs import read_log_tail
from launchdeck.contracts.messages import BuildRequested
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS
from launchdeck.libs.jetstream import connect
from launchdeck.libs.jobs import Outcome
from tests.build_worker.processes import wait_gone
from tests.build_worker.streams import build_events, log_batches, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.support import GitRepoFactory, git

GEN_SCRIPT = """\
import os, sys
os.makedirs("dist/assets", exist_ok=True)
for i in range(1, 301):
    print(f"generated page {i}")
print("a warning", file=sys.stderr)
open("dist/index.html", "w").write("<h1>built</h1>")
open("dist/assets/app.js", "w").write("console.log('hi')")
"""


def system_lines(lines: list[str]) -> str:
    return "\n".join(lines)


async def fetch_artifact(js: JetStreamContext, key: str) -> bytes:
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    result = await store.get(key)
    assert result.data is not None
    return result.data


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


def leftovers(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


async def test_static_site_build_publishes_logs_events_and_artifact(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
) -> None:
    """A root index.html site: contiguous log, status sequence, artifact with the right sha256."""
    repo = make_git_repo({"index.html": "<h1>hello</h1>", "css/site.css": "body{}"})
    sha = git(repo, "rev-parse", "HEAD").strip()
    cmd = command(repo)

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cloning", "packaging", "succeeded"]
    assert [e.step for e in events] == ["clone", "package", None]
    done = events[-1]
    assert (done.commit_sha, done.commit_message, done.attempt) == (sha, "initial commit", 1)
    assert done.artifact is not None
    assert done.artifact.key == f"{cmd.build_id}.tar.gz"
    assert done.artifact.kind == "static"
    data = await fetch_artifact(js, done.artifact.key)
    assert hashlib.sha256(data).hexdigest() == done.artifact.sha256
    assert len(data) == done.artifact.size
    assert tar_names(data) == ["css", "css/site.css", "index.html"]  # no .git

    batches = await log_batches(js, cmd.build_id)
    lines = [line for b in batches for line in b.lines]
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert all(line.stream == "system" for line in lines)
    text = [line.line for line in lines]
    assert text[0] == f"▶ Cloning {repo} (ref main)"
    assert re.fullmatch(r"✔ Cloned [0-9a-f]{7} in \d+\.\ds", text[1])
    assert text[1].startswith(f"✔ Cloned {sha[:7]}")
    assert "▶ Detected static site (index.html at the repository root)" in text
    assert "▶ Packaging the repository root" in text
    assert any(
        re.fullmatch(r"✔ Packaged 2 files \(.*sha256 [0-9a-f]{12}\) in .*s", t) for t in text
    )
    assert text[-1].startswith("✔ Build succeeded in ")
    assert (batches[-1].eof, batches[-1].status) == (True, "succeeded")
    assert not any(b.eof for b in batches[:-1])
    assert leftovers(build_dir) == []


async def test_build_command_output_is_streamed_in_order(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """A build command's stdout/stderr lines are logged in order between its system lines."""
    repo = make_git_repo({"gen.py": GEN_SCRIPT})
    cmd = command(repo, build_command="python3 gen.py")

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cloning", "building", "packaging", "succeeded"]
    lines = await log_lines(js, cmd.build_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    stdout = [line.line for line in lines if line.stream == "stdout"]
    assert stdout == [f"generated page {i}" for i in range(1, 301)]
    assert [line.line for line in lines if line.stream == "stderr"] == ["a warning"]
    text = [line.line for line in lines]
    start = text.index("▶ Build: python3 gen.py")
    end = next(i for i, t in enumerate(text) if t.startswith("✔ Build finished in "))
    assert start < text.index("generated page 1") < text.index("generated page 300") < end
    assert "▶ Packaging dist/" in text
    assert events[-1].artifact is not None
    data = await fetch_artifact(js, events[-1].artifact.key)
    assert tar_names(data) == ["assets", "assets/app.js", "index.html"]


async def test_build_commands_do_not_see_the_workers_environment(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's own variables (its credentials) stay out of a build run through the
    handler; the build's own variables (CI) are there."""
    monkeypatch.setenv("LAUNCHDECK_TEST_WORKER_SECRET", "worker-only-s3cret")
    repo = make_git_repo({"index.html": "<h1>env</h1>"})
    probe = "echo secret=${LAUNCHDECK_TEST_WORKER_SECRET:-unset} ci=${CI:-unset}"
    cmd = command(repo, build_command=f"sh -c '{probe}'", output_dir=".")

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    lines = await log_lines(js, cmd.build_id)
    assert [line.line for line in lines if line.stream == "stdout"] == ["secret=unset ci=true"]
    assert not any("worker-only-s3cret" in line.line for line in lines)
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded"


async def test_failing_build_command_fails_the_build_and_acks(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """A command exiting non-zero: failed event with step and readable error, in the log too."""
    repo = make_git_repo({"fail.py": "import sys\nprint('compiling', flush=True)\nsys.exit(2)\n"})
    cmd = command(repo, build_command="python3 fail.py", output_dir="dist")

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cloning", "building", "failed"]
    failed = events[-1]
    assert failed.error == "`python3 fail.py` exited with code 2"
    assert failed.step == "build"
    assert failed.commit_sha is not None
    batches = await log_batches(js, cmd.build_id)
    text = [line.line for b in batches for line in b.lines]
    assert "compiling" in text
    assert text[-1] == "✖ Build failed: `python3 fail.py` exited with code 2"
    assert (batches[-1].eof, batches[-1].status) == (True, "failed")


async def test_missing_repository_fails_with_a_readable_reason(
    js: JetStreamContext, worker: BuildWorker, command: CommandFactory, tmp_path: Path
) -> None:
    """A repository that does not exist: failed, the reason in the event's error and the log."""
    cmd = command(tmp_path / "no-such-repo")

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cloning", "failed"]
    error = events[-1].error
    assert error is not None
    assert error.startswith(f"Repository {tmp_path / 'no-such-repo'} was not found")
    lines = await log_lines(js, cmd.build_id)
    assert lines[-1].line == f"✖ Build failed: {error}"


async def test_local_repositories_are_refused_when_not_allowed(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
) -> None:
    """With LAUNCHDECK_ALLOW_LOCAL_REPOS off, a local path fails with the reason, unread."""
    worker = BuildWorker(js, make_settings(build_dir, allow_local_repos=False))
    cmd = command(make_git_repo({"index.html": "x"}))

    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cloning", "failed"]
    assert events[-1].error is not None
    assert "Local repositories are not allowed" in events[-1].error
    assert events[-1].commit_sha is None


async def test_unknown_layout_fails_clearly(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """No recognisable app: failed with a message saying what was looked for (process apps
    build: test_apps.py)."""
    unknown = command(make_git_repo({"README.md": "just docs"}))
    assert await worker.handle_build(unknown, delivery()) is Outcome.ACK

    unknown_error = (await build_events(js, unknown.project_id, unknown.build_id))[-1].error
    assert unknown_error is not None
    assert unknown_error.startswith("Could not detect how to build this app")


INTERRUPTIBLE = """\
import os, sys, time
marker = {marker!r}
if not os.path.exists(marker):
    open(marker, "w").write(str(os.getpid()))
    print("first attempt: hanging", flush=True)
    time.sleep(600)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("second attempt")
print("second attempt: done", flush=True)
"""


async def wait_for_line(js: JetStreamContext, cmd: BuildRequested, text: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if (await read_log_tail(js, cmd.build_id)).last_seq:
            lines = await log_lines(js, cmd.build_id)
            if any(line.line == text for line in lines):
                return
        assert time.monotonic() < deadline, f"never logged {text!r}"
        await asyncio.sleep(0.05)


async def test_interrupted_build_is_continued_by_the_next_attempt(
    js: JetStreamContext,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """Cancelled mid-build (shutdown) then redelivered: seq continues, attempt 2 is marked."""
    # Unsandboxed: the build tells the test its pid, and attempt 2 that attempt 1 ran, through a
    # file outside its workspace (test_sandbox.py covers cancelling a sandboxed build).
    worker = BuildWorker(js, make_settings(build_dir, sandbox="none"))
    marker = tmp_path / "first-attempt.pid"
    repo = make_git_repo({"slow.py": INTERRUPTIBLE.format(marker=str(marker))})
    cmd = command(repo, build_command="python3 slow.py")

    first = asyncio.create_task(worker.handle_build(cmd, delivery(1)))
    await wait_for_line(js, cmd, "first attempt: hanging")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    await wait_gone(int(marker.read_text()))  # the hanging build process was killed
    interrupted = await log_lines(js, cmd.build_id)

    assert await worker.handle_build(cmd, delivery(2)) is Outcome.ACK

    lines = await log_lines(js, cmd.build_id)
    assert lines[: len(interrupted)] == interrupted
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    text = [line.line for line in lines]
    assert interrupted[-1].line.startswith("■ The worker is shutting down")
    assert text[len(interrupted)] == "▶ Attempt 2 (previous attempt was interrupted)"
    assert "second attempt: done" in text
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [(e.status, e.attempt) for e in events] == [
        ("cloning", 1), ("building", 1),
        ("cloning", 2), ("building", 2), ("packaging", 2), ("succeeded", 2),
    ]  # fmt: skip


async def test_redelivery_of_a_finished_build_changes_nothing(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """A job redelivered after its end was logged (lost ack) is acked without rebuilding."""
    cmd = command(make_git_repo({"index.html": "x"}))
    assert await worker.handle_build(cmd, delivery(1)) is Outcome.ACK
    before = await log_batches(js, cmd.build_id)
    assert await worker.handle_build(cmd, delivery(2)) is Outcome.ACK
    assert await log_batches(js, cmd.build_id) == before
    assert len(await build_events(js, cmd.project_id, cmd.build_id)) == 3


async def test_nats_unreachable_means_retry(
    nats_url: str, command: CommandFactory, make_git_repo: GitRepoFactory, build_dir: Path
) -> None:
    """An infrastructure failure (NATS gone) hands the job back for another attempt."""
    nc: Client = await connect(nats_url, name="build-worker-test")
    js = nc.jetstream()
    await nc.close()
    worker = BuildWorker(js, make_settings(build_dir))
    cmd = command(make_git_repo({"index.html": "x"}))
    assert await worker.handle_build(cmd, delivery()) is Outcome.RETRY
    assert leftovers(build_dir) == []


async def test_internal_errors_retry_then_fail_on_the_last_delivery(
    js: JetStreamContext, command: CommandFactory, make_git_repo: GitRepoFactory, tmp_path: Path
) -> None:
    """A worker-side failure (unusable build dir) is retried; the last delivery reports failed."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    worker = BuildWorker(js, make_settings(blocker / "builds"))
    cmd = command(make_git_repo({"index.html": "x"}))

    assert await worker.handle_build(cmd, delivery(1)) is Outcome.RETRY
    tail = await read_log_tail(js, cmd.build_id)
    assert not tail.finished
    assert await build_events(js, cmd.project_id, cmd.build_id) == []

    assert await worker.handle_build(cmd, delivery(3, max_deliver=3)) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [(e.status, e.attempt) for e in events] == [("failed", 3)]
    assert events[-1].error == (
        "Internal error in the build-worker after 3 attempt(s): NotADirectoryError"
    )
    batches = await log_batches(js, cmd.build_id)
    text = [line.line for b in batches for line in b.lines]
    assert text[0].startswith("⚠ Attempt 1 stopped by an internal error (NotADirectoryError)")
    assert "▶ Attempt 3 (previous attempt was interrupted)" in text
    assert (batches[-1].eof, batches[-1].status) == (True, "failed")
