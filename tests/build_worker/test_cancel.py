"""Cancelled and timed-out builds on the worker: a running build's whole process group (and what
escaped it) is gone within 5 s of the cancel, whether the word reaches the worker or only the
mark does; a job cancelled before it ran is acked without running; a build past its time limit
fails with reason `timeout` and leaves no process behind. Real NATS, real git, real processes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildCancelRequested, BuildRequested
from launchdeck.contracts.subjects import KV_CANCELLATIONS, SUBJECT_BUILD_CANCEL
from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.sandbox import SandboxMode, detect_sandbox
from launchdeck.libs.processes import process_alive
from tests.build_worker.processes import build_processes
from tests.build_worker.streams import build_events, log_batches, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.build_worker.test_handler import leftovers
from tests.polling import eventually
from tests.support import GitRepoFactory

# A build that starts two children in its process group and one escapee in a session of its
# own (double-forked: re-parented, out of the group), says so, and waits for ever.
SPAWNER = """\
import os, subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            for _ in range(2)]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
print("ready", flush=True)
time.sleep(600)
"""
TOML = """\
[build]
build_command = "python3 spawn.py"
output_dir = "."
"""
# Processes of one build seen from outside: the command, its two children, the escapee (and,
# sandboxed, bubblewrap's own).
AT_LEAST = 4
STOPPED_WITHIN_S = 5.0


def spawner_repo(make_git_repo: GitRepoFactory, toml: str = TOML) -> str:
    return str(make_git_repo({"spawn.py": SPAWNER, "launchdeck.toml": toml, "index.html": "x"}))


async def running(js: JetStreamContext, cmd: BuildRequested) -> list[int]:
    """Once the build says it is ready: the pids of all its processes."""

    async def ready() -> bool:
        return "ready" in [line.line for line in await log_lines(js, cmd.build_id)]

    await eventually("the build to start its processes", ready)
    return await eventually(
        "every process of the build",
        lambda: pids if len(pids := build_processes(cmd.build_id)) >= AT_LEAST else None,
    )


async def stopped_within(pids: list[int], seconds: float, since: float) -> float:
    """Wait until every one of `pids` is gone; fail past `seconds` after `since`."""
    left = seconds - (time.monotonic() - since)
    await eventually(
        f"processes {pids} to be gone", lambda: not any(map(process_alive, pids)), left
    )
    return time.monotonic() - since


async def mark_cancelled(js: JetStreamContext, cmd: BuildRequested) -> BuildCancelRequested:
    """What the control-api writes first: the build's key in the `cancellations` bucket."""
    word = BuildCancelRequested(
        build_id=cmd.build_id, project_id=cmd.project_id, requested_at=datetime.now(UTC)
    )
    bucket = await js.key_value(KV_CANCELLATIONS)
    await bucket.put(cmd.build_id, encode(word))
    return word


async def assert_ended_cancelled(js: JetStreamContext, cmd: BuildRequested) -> list[str]:
    """The log ends with a `■ Cancelled` line and an eof `cancelled`; the last event is
    `cancelled` with reason `cancelled`. Returns the log's text."""
    batches = await log_batches(js, cmd.build_id)
    assert (batches[-1].eof, batches[-1].status) == (True, "cancelled")
    lines = [line for batch in batches for line in batch.lines]
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert lines[-1].stream == "system"
    assert lines[-1].line.startswith("■ Cancelled")
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert (events[-1].status, events[-1].reason) == ("cancelled", "cancelled")
    assert events[-1].error == "Cancelled on request"
    return [line.line for line in lines]


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
async def test_the_cancel_word_stops_a_running_build_and_all_its_processes(
    js: JetStreamContext,
    nc: Client,
    build_dir: Path,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    sandbox: SandboxMode,
) -> None:
    """`BuildCancelRequested` on `ld.control.build.cancel`: the worker running the build kills
    its process group and the escapee within 5 s — in the sandbox (its PID namespace ends) and
    without one (the reaper finds the escapee by its marker) —, logs `■ Cancelled`, reports
    `cancelled` and acks."""
    if sandbox == "bwrap" and not detect_sandbox("auto").enabled:
        pytest.skip("bubblewrap does not work on this machine")
    worker = BuildWorker(js, make_settings(build_dir, sandbox=sandbox))
    sub = await nc.subscribe(SUBJECT_BUILD_CANCEL, cb=worker.cancellations.on_message)
    cmd = command(spawner_repo(make_git_repo))
    handling = asyncio.create_task(worker.handle_build(cmd, delivery()))
    try:
        pids = await running(js, cmd)
        asked = time.monotonic()
        word = BuildCancelRequested(build_id=cmd.build_id, project_id=cmd.project_id)
        await nc.publish(SUBJECT_BUILD_CANCEL, encode(word))
        took = await stopped_within(pids, STOPPED_WITHIN_S, asked)
        assert await asyncio.wait_for(handling, STOPPED_WITHIN_S) is Outcome.ACK
    finally:
        handling.cancel()
        await sub.unsubscribe()
    assert build_processes(cmd.build_id) == []
    text = await assert_ended_cancelled(js, cmd)
    assert "ready" in text
    assert worker.status()["builds_cancelled"] == 1
    assert took < STOPPED_WITHIN_S


async def test_a_lost_word_is_made_up_for_by_the_mark(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """No word reaches the worker (it is not subscribed): the mark in the `cancellations`
    bucket, looked for every few seconds, stops the build all the same."""
    cmd = command(spawner_repo(make_git_repo))
    handling = asyncio.create_task(worker.handle_build(cmd, delivery()))
    try:
        pids = await running(js, cmd)
        asked = time.monotonic()
        await mark_cancelled(js, cmd)
        await stopped_within(pids, 3.0 + STOPPED_WITHIN_S, asked)  # the poll, then the kill
        assert await asyncio.wait_for(handling, STOPPED_WITHIN_S) is Outcome.ACK
    finally:
        handling.cancel()
    assert build_processes(cmd.build_id) == []
    await assert_ended_cancelled(js, cmd)


async def test_a_job_cancelled_before_it_ran_is_acked_without_running(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
) -> None:
    """The job of a build cancelled while queued (its mark written, its log not ended — the
    control-api could not end it): nothing is cloned or run, the log gets its end, the status
    `cancelled`, the job is acked; a redelivery changes nothing."""
    cmd = command(spawner_repo(make_git_repo))
    await mark_cancelled(js, cmd)
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    assert leftovers(build_dir) == []  # not even a work directory
    text = await assert_ended_cancelled(js, cmd)
    assert text == ["■ Cancelled before it started"]
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert [e.status for e in events] == ["cancelled"]
    before = await log_batches(js, cmd.build_id)
    assert await worker.handle_build(cmd, delivery(2)) is Outcome.ACK
    assert await log_batches(js, cmd.build_id) == before


async def test_a_build_past_its_time_limit_fails_with_reason_timeout_and_no_process_left(
    js: JetStreamContext,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """The project's `timeout_s` (3 s): the build fails with reason `timeout`, its error says
    so with the limit and the command, and none of its processes (escapee included) is left."""
    cmd = command(spawner_repo(make_git_repo), timeout_s=3)
    seen: list[int] = []

    async def watch() -> None:
        seen.extend(await running(js, cmd))

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    took = time.monotonic() - started
    await asyncio.wait_for(watcher, 5)
    assert len(seen) >= AT_LEAST
    assert not any(map(process_alive, seen))
    assert build_processes(cmd.build_id) == []
    events = await build_events(js, cmd.project_id, cmd.build_id)
    last = events[-1]
    assert (last.status, last.reason, last.step) == ("failed", "timeout", "build")
    assert last.error == (
        "Timed out: the build's time limit of 3s was reached while running "
        "`python3 spawn.py`; its processes were killed"
    )
    lines = await log_lines(js, cmd.build_id)
    assert lines[-1].line == f"✖ Build failed: {last.error}"
    assert (await log_batches(js, cmd.build_id))[-1].status == "failed"
    assert took < 3 + STOPPED_WITHIN_S + 5  # the limit, the kill, the reports


async def test_a_cancel_of_another_build_changes_nothing(
    js: JetStreamContext,
    nc: Client,
    worker: BuildWorker,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
) -> None:
    """A word for a build this worker does not run (or a malformed one) is ignored."""
    sub = await nc.subscribe(SUBJECT_BUILD_CANCEL, cb=worker.cancellations.on_message)
    cmd = command(make_git_repo({"index.html": "x"}))
    other = BuildCancelRequested(build_id="another-build", project_id=cmd.project_id)
    try:
        await nc.publish(SUBJECT_BUILD_CANCEL, encode(other))
        await nc.publish(SUBJECT_BUILD_CANCEL, b"not json")
        await nc.flush()
        assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    finally:
        await sub.unsubscribe()
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded"
