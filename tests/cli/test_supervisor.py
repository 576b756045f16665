"""The dev process supervisor, with real (dummy) child processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from launchdeck.cli.supervisor import Backoff, ChildSpec, Supervisor
from launchdeck.libs.processes import process_alive
from tests.polling import eventually, eventually_sync

CRASHER = "print('hello from the crasher', flush=True); raise SystemExit(3)"

# A child that starts a grandchild in its own process group, reports both pids, then waits.
# With `ignore_term` it ignores SIGTERM, so only SIGKILL after the grace period stops it.
PARENT_OF_GRANDCHILD = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    if sys.argv[1] == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"pids {grandchild.pid}", flush=True)
    while True:
        time.sleep(1)
    """
)


class Recorder:
    def __init__(self) -> None:
        self.output: list[tuple[str, str]] = []
        self.announcements: list[tuple[float, str, str]] = []

    def on_output(self, name: str, line: str) -> None:
        self.output.append((name, line))

    def on_announce(self, name: str, message: str) -> None:
        self.announcements.append((time.monotonic(), name, message))

    def messages(self, name: str, containing: str) -> list[str]:
        return [m for _, n, m in self.announcements if n == name and containing in m]

    def grandchild_pids(self) -> list[int]:
        return [int(line.split()[1]) for _, line in self.output if line.startswith("pids ")]


def python_child(name: str, code: str, *args: str) -> ChildSpec:
    return ChildSpec(name=name, argv=(sys.executable, "-c", code, *args), env=dict(os.environ))


async def test_crashing_child_is_restarted_with_backoff_and_announced() -> None:
    """A child that keeps exiting is restarted after 0.05, 0.1, 0.2, 0.2 s (doubling, capped),
    each exit and restart is announced with the exit code, and its output is passed on."""
    rec = Recorder()
    supervisor = Supervisor(
        [python_child("crasher", CRASHER)],
        on_output=rec.on_output,
        on_announce=rec.on_announce,
        backoff=Backoff(initial_s=0.05, max_s=0.2, reset_after_s=60),
    )
    await supervisor.start()
    try:
        await eventually("four restarts", lambda: supervisor.restarts("crasher") >= 4)
        await eventually(
            "the output of five runs",
            lambda: rec.output.count(("crasher", "hello from the crasher")) >= 5,
        )
    finally:
        await supervisor.stop(grace_s=5)

    restarts = rec.messages("crasher", "restarting")
    assert all(m.startswith("exited with code 3 after ") for m in restarts)
    delays = [float(re.findall(r"restarting in ([\d.]+)s", m)[0]) for m in restarts]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.2]
    assert [re.findall(r"restart #(\d+)", m)[0] for m in restarts[:4]] == ["1", "2", "3", "4"]
    # Each restart really waited its delay before starting the child again.
    starts = [t for t, n, m in rec.announcements if n == "crasher" and m.startswith("started")]
    exits = [t for t, n, m in rec.announcements if n == "crasher" and "restarting" in m]
    for exited_at, started_again, delay in zip(exits, starts[1:], delays, strict=False):
        assert started_again - exited_at >= delay * 0.9
    assert rec.output.count(("crasher", "hello from the crasher")) >= 5
    pids = supervisor.pids("crasher")
    assert len(set(pids)) == len(pids) >= 5


def test_backoff_resets_after_a_healthy_run() -> None:
    """Delays double up to the cap; a child that ran 60 s before exiting starts again at 1 s."""
    backoff = Backoff()
    delay = None
    seen = []
    for _ in range(7):
        delay = backoff.next_delay(delay, ran_for_s=0.5)
        seen.append(delay)
    assert seen == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(30, ran_for_s=60.0) == 1
    assert backoff.next_delay(30, ran_for_s=59.0) == 30


async def test_stop_leaves_no_process_behind() -> None:
    """Stopping SIGTERMs every child, SIGKILLs one that ignores SIGTERM after the grace period,
    and kills what the children started: no child or grandchild pid survives."""
    rec = Recorder()
    supervisor = Supervisor(
        [
            python_child("polite", PARENT_OF_GRANDCHILD, "default"),
            python_child("stubborn", PARENT_OF_GRANDCHILD, "ignore_term"),
        ],
        on_output=rec.on_output,
        on_announce=rec.on_announce,
        grace_s=1.0,
    )
    await supervisor.start()
    await eventually("both grandchildren", lambda: len(rec.grandchild_pids()) == 2)
    children = [supervisor.pid("polite"), supervisor.pid("stubborn")]
    everyone = [pid for pid in children if pid is not None] + rec.grandchild_pids()
    assert len(everyone) == 4
    assert all(process_alive(pid) for pid in everyone)

    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 8

    # SIGKILL is delivered at once but a process finishes dying on its own time slice, which
    # a loaded machine may give it a moment later: poll, with a deadline, for the exits.
    await eventually("every exit", lambda: not any(process_alive(pid) for pid in everyone), 5)
    assert rec.messages("stubborn", "did not stop within 1s; killing it")
    assert not rec.messages("polite", "killing")
    assert rec.messages("polite", "stopped (was killed by SIGTERM)")
    assert supervisor.restarts("polite") == supervisor.restarts("stubborn") == 0


async def test_stop_cuts_a_restart_delay_short() -> None:
    """A child waiting 30 s for its restart does not hold up shutdown."""
    rec = Recorder()
    supervisor = Supervisor(
        [python_child("crasher", CRASHER)],
        on_output=rec.on_output,
        on_announce=rec.on_announce,
        backoff=Backoff(initial_s=30),
    )
    await supervisor.start()
    await eventually("backoff", lambda: rec.messages("crasher", "restarting in 30s"))
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 2
    assert len(supervisor.pids("crasher")) == 1


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Even `kill -9` of the supervising process leaves no orphan: children get SIGTERM."""
    script = tmp_path / "supervise.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            from launchdeck.cli.supervisor import ChildSpec, Supervisor

            async def main():
                spec = ChildSpec("sleeper", (sys.executable, "-c", "import time; time.sleep(600)"),
                                 dict(os.environ))
                sup = Supervisor([spec], on_output=lambda n, l: None,
                                 on_announce=lambda n, m: print(n, m, flush=True))
                await sup.start()
                await asyncio.Event().wait()

            asyncio.run(main())
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        child = int(re.findall(r"started \(pid (\d+)\)", line)[0])
        assert process_alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        eventually_sync("the orphan to die", lambda: not process_alive(child))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
