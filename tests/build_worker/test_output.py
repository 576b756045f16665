"""A command's output as `run_command` hands it over: whole lines per read, whatever the pipe
cuts, and a sink that is backed up holding the command back rather than losing lines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path

from launchdeck.build_worker.run import build_env, run_command
from launchdeck.contracts.messages import LogStream

# Writes its output in pieces, flushed apart: a CRLF and a UTF-8 character cut in two, an
# invalid byte, and a last line without a newline.
PIECES = """\
import os, sys, time
for piece in (b"caf\\xc3", b"\\xa9 ok\\r", b"\\nnext\\r\\n", b"bad \\xff byte\\n", b"tail"):
    os.write(1, piece)
    time.sleep(0.05)
"""


async def test_lines_are_whole_whatever_the_reads_cut(tmp_path: Path) -> None:
    (tmp_path / "pieces.py").write_text(PIECES)
    reads: list[list[str]] = []

    def sink(stream: LogStream, lines: list[str]) -> None:
        assert stream == "stdout"
        reads.append(lines)

    await run_command(
        [sys.executable, "pieces.py"],
        cwd=tmp_path,
        env=build_env(tmp_path),
        sink=sink,
        timeout_s=30,
    )
    assert [line for lines in reads for line in lines] == [
        "café ok",
        "next",
        "bad \ufffd byte",
        "tail",
    ]
    assert len(reads) > 1  # several reads: the cuts were real


async def test_a_backed_up_sink_holds_the_command_without_losing_lines(tmp_path: Path) -> None:
    """While the sink's awaitable is pending, the reader stops reading: the command blocks on
    its full pipe (it has not finished), and every line arrives once the sink takes them."""
    (tmp_path / "many.py").write_text("for i in range(100_000):\n    print(f'line {i}')\n")
    held = asyncio.Event()
    release = asyncio.Event()
    got: list[str] = []

    def sink(stream: LogStream, lines: list[str]) -> Awaitable[None] | None:
        got.extend(lines)
        if held.is_set():
            return None
        held.set()
        return _after(release)  # backed up until the test releases it

    task = asyncio.create_task(
        run_command(
            [sys.executable, "many.py"],
            cwd=tmp_path,
            env=build_env(tmp_path),
            sink=sink,
            timeout_s=60,
        )
    )
    await held.wait()
    # Not a synchronisation: a window in which the command, unheld, would have finished ten
    # times over; held, it cannot (its pipe is full), so it must still be running after it.
    await asyncio.sleep(0.5)
    assert not task.done()
    release.set()
    await task
    assert got == [f"line {i}" for i in range(100_000)]


async def _after(event: asyncio.Event) -> None:
    await event.wait()
