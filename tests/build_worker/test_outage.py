"""A build while NATS goes away (issue 6), through `handle_build` against a NATS server of the
test's own that is stopped mid-build: the build never hangs, the log's numbering has no hole, and
whatever is missing from the log is said where it is missing."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.contracts.messages import BuildRequested, LogLine
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.libs.support import RestartableNats
from tests.polling import eventually
from tests.support import GitRepoFactory

# Prints a numbered line every 50 ms until the test says stop (or 2 minutes pass). The test says
# so with a file outside the build's workspace, so these builds run unsandboxed.
STEADY = """\
import os, time
finish = {finish!r}
stop_at = time.monotonic() + 120
i = 0
while not os.path.exists(finish) and time.monotonic() < stop_at:
    i += 1
    print(f"line {{i}}", flush=True)
    time.sleep(0.05)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>steady</h1>")
"""

# Prints five lines, then waits for the test's go (with NATS stopped meanwhile) and prints one more.
WAITS_FOR_GO = """\
import os, time
for i in range(1, 6):
    print(f"before {{i}}", flush=True)
stop_at = time.monotonic() + 60
while not os.path.exists({go!r}) and time.monotonic() < stop_at:
    time.sleep(0.02)
print("after", flush=True)
os.makedirs("dist", exist_ok=True)
open("dist/index.html", "w").write("<h1>late</h1>")
"""

GAP = re.compile(
    r"✂ (\d+) lines? (?:was|were) not recorded: the log stream was unavailable for (\d+)s "
    r"\(at most \d+ unsent lines are kept\)"
)


async def logged(js: JetStreamContext, cmd: BuildRequested, check: str) -> bool:
    return any(line.line == check for line in await log_lines(js, cmd.build_id))


async def marker_logged(js: JetStreamContext, cmd: BuildRequested) -> bool:
    return any(GAP.fullmatch(line.line) for line in await log_lines(js, cmd.build_id))


def check_gaps_are_explained(lines: list[LogLine]) -> list[tuple[int, int]]:
    """Every jump in the printed `line i` numbers sits right after a marker naming exactly the
    missing count, and every marker stands before such a jump. Returns (dropped, seconds) of each
    marker."""
    markers: list[tuple[int, int]] = []
    previous: int | None = None
    pending: int | None = None  # lines a marker just announced as missing
    for line in lines:
        match = GAP.fullmatch(line.line)
        if match:
            assert pending is None, "two markers for one gap"
            pending = int(match.group(1))
            markers.append((pending, int(match.group(2))))
            continue
        printed = re.fullmatch(r"line (\d+)", line.line)
        if line.stream != "stdout" or printed is None:
            continue
        number = int(printed.group(1))
        if previous is not None:
            assert number - previous - 1 == (pending or 0), (
                f"line {previous} → line {number}, announced missing: {pending}"
            )
        previous, pending = number, None
    return markers


async def test_a_build_rides_out_nats_stopped_for_20_seconds(
    restartable_nats: RestartableNats,
    own_nc: Client,
    own_js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
    tmp_path: Path,
) -> None:
    """NATS stops for 20 s while a build prints 20 lines a second, with room for 100 unsent
    lines: the build finishes on its first attempt, within bounded time; its log is numbered
    1..N without a hole, and the lines it could not hold are announced where they are missing."""
    finish = tmp_path / "finish"
    cmd = command(
        make_git_repo({"steady.py": STEADY.format(finish=str(finish))}),
        build_command="python3 steady.py",
    )
    worker = BuildWorker(own_js, make_settings(build_dir, log_buffer_lines=100, sandbox="none"))
    build = asyncio.create_task(worker.handle_build(cmd, delivery(1)))
    try:
        await eventually("line 20 stored", lambda: logged(own_js, cmd, "line 20"), timeout_s=20)
        await restartable_nats.astop()
        await asyncio.sleep(20)  # the outage itself (not a synchronisation): NATS stays away
        assert not build.done()
        await restartable_nats.astart()
        await eventually("the gap explained", lambda: marker_logged(own_js, cmd), timeout_s=20)
        finish.touch()
        outcome = await asyncio.wait_for(build, 20)
    finally:
        finish.touch()
        build.cancel()
    assert outcome is Outcome.ACK
    events = await build_events(own_js, cmd.project_id, cmd.build_id)
    assert [(e.status, e.attempt) for e in events] == [
        ("cloning", 1), ("building", 1), ("packaging", 1), ("succeeded", 1),
    ]  # fmt: skip
    lines = await log_lines(own_js, cmd.build_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    markers = check_gaps_are_explained(lines)
    assert len(markers) == 1
    dropped, seconds = markers[0]
    assert dropped > 100  # 20 s of 20 lines a second, less the 100 held
    assert seconds >= 15
    assert lines[-1].line.startswith("✔ Build succeeded")


async def test_an_outage_past_the_deadline_fails_the_attempt_and_the_next_one_says_so(
    restartable_nats: RestartableNats,
    own_nc: Client,
    own_js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    build_dir: Path,
    tmp_path: Path,
) -> None:
    """NATS stays away past the attempt's deadline (time limit 6 s + 1 s of grace): the attempt
    ends with RETRY and a readable reason instead of heartbeating on; redelivered once NATS is
    back, the next attempt continues the numbering and says where attempt 1's log breaks off."""
    go = tmp_path / "go"
    cmd = command(
        make_git_repo({"late.py": WAITS_FOR_GO.format(go=str(go))}),
        build_command="python3 late.py",
        timeout_s=6,
    )
    worker = BuildWorker(own_js, make_settings(build_dir, outage_grace_s=1.0, sandbox="none"))
    started = time.monotonic()
    with capture_logs() as events_logged:
        first = asyncio.create_task(worker.handle_build(cmd, delivery(1)))
        try:
            await eventually("before 5 stored", lambda: logged(own_js, cmd, "before 5"))
            await restartable_nats.astop()
            go.touch()
            assert await asyncio.wait_for(first, 20) is Outcome.RETRY
        finally:
            go.touch()
            first.cancel()
    assert time.monotonic() - started >= 7  # it waited for NATS until the deadline …
    (error,) = [e for e in events_logged if e["event"] == "build_attempt_error"]
    assert re.search(r"NATS was unavailable for \d+s", error["error"])  # … and said why

    await restartable_nats.astart()
    await eventually("reconnected", lambda: own_nc.is_connected, timeout_s=15)
    assert await asyncio.wait_for(worker.handle_build(cmd, delivery(2)), 30) is Outcome.ACK

    lines = await log_lines(own_js, cmd.build_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    text = [line.line for line in lines]
    broke_off = text.index("before 5") + 1
    assert text[broke_off : broke_off + 2] == [
        "▶ Attempt 2 (previous attempt was interrupted)",
        f"⚠ The previous attempt's log ends at line {broke_off} without a reason: its worker "
        "stopped or lost NATS, and what it printed after that line was not recorded",
    ]
    assert text.count("after") == 1  # attempt 1's was never stored …
    assert text.index("after") > broke_off  # … attempt 2's is
    events = await build_events(own_js, cmd.project_id, cmd.build_id)
    assert [(e.status, e.attempt) for e in events] == [
        ("cloning", 1), ("building", 1),
        ("cloning", 2), ("building", 2), ("packaging", 2), ("succeeded", 2),
    ]  # fmt: skip
