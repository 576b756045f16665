"""Running a project's install/build command as a child process, streaming its output.

The command is split with shlex and executed directly (argv, no shell), so nothing from the
project is ever interpolated into a shell line. The child gets only the environment built by
`build_env` (never the worker's own variables, which hold the platform's credentials), runs in
its own process group, and the whole group is killed on timeout, on cancellation, and after the
command exits (so a stray background process cannot outlive its build).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.contracts.messages import LogStream

OutputSink = Callable[[LogStream, str], None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_CHUNK = 64 * 1024
# A "line" without a newline (minified output, progress bars) is cut here so memory stays bounded.
MAX_RAW_LINE = 64 * 1024
KILL_GRACE_S = 3.0


def build_path() -> str:
    """The PATH builds run with: the worker's, so the machine's toolchains are found."""
    return os.environ.get("PATH") or DEFAULT_PATH


def build_env(
    home: Path,
    project_vars: Mapping[str, str] | None = None,
    *,
    passthrough: Sequence[str] = (),
    tools: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Only what a build needs: `build_path()`, a fresh HOME, and the worker variables named in
    `passthrough` (the operator's choice, e.g. the CA bundle). `tools` (e.g. the package
    managers' cache directories) come before the project's own variables, which win."""
    env = {
        "PATH": build_path(),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CI": "true",
    }
    env.update({name: os.environ[name] for name in passthrough if name in os.environ})
    if tools:
        env.update(tools)
    if project_vars:
        env.update(project_vars)
    return env


def parse_command(command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BuildFailed(f"Cannot parse the command {command!r}: {exc}") from None
    if not argv:
        raise BuildFailed("The command is empty")
    return argv


async def _pump(stream: asyncio.StreamReader, name: LogStream, sink: OutputSink) -> None:
    """Forward `stream` to `sink` line by line as it arrives (chunked reads keep it cheap)."""
    pending = b""
    while chunk := await stream.read(READ_CHUNK):
        data = pending + chunk if pending else chunk
        parts = data.split(b"\n")
        pending = parts.pop()
        for raw in parts:
            sink(name, raw.removesuffix(b"\r").decode("utf-8", "replace"))
        while len(pending) > MAX_RAW_LINE:
            sink(name, pending[:MAX_RAW_LINE].decode("utf-8", "replace"))
            pending = pending[MAX_RAW_LINE:]
    if pending:
        sink(name, pending.removesuffix(b"\r").decode("utf-8", "replace"))


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the child's exit on its own: `Process.wait()` also waits for the pipes to close,
    which a background grandchild holding them open would delay forever."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _spawn(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAwareProtocol(limit=READ_CHUNK, loop=loop),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so the group can be killed
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


async def _stop_group(proc: asyncio.subprocess.Process, exited: asyncio.Event) -> None:
    """SIGTERM the group, give it a moment, then SIGKILL whatever is left."""
    if not exited.is_set():
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), KILL_GRACE_S)
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(exited.wait(), KILL_GRACE_S)


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    sink: OutputSink,
    timeout_s: float,
) -> float:
    """Run `argv` (see `parse_command`) in `cwd`; return its duration. Raises BuildFailed on
    failure or timeout."""
    command = shlex.join(argv)  # for messages
    started = time.monotonic()
    try:
        proc, exited = await _spawn(argv, cwd, env)
    except FileNotFoundError:
        raise BuildFailed(
            f"Command not found: {argv[0]!r} (commands run without a shell; "
            "use e.g. `sh -c '...'` for shell syntax)"
        ) from None
    except PermissionError:
        raise BuildFailed(f"Command {argv[0]!r} is not executable") from None
    assert proc.stdout is not None
    assert proc.stderr is not None
    readers = (
        asyncio.create_task(_pump(proc.stdout, "stdout", sink)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink)),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await exited.wait()
            # Leftover children would keep the pipes open: end them, then drain what was written.
            _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.gather(*readers)
            code = await proc.wait()
    except TimeoutError:
        raise BuildFailed(
            f"`{command}` did not finish within the build's time limit "
            f"({time.monotonic() - started:.0f}s); its processes were killed"
        ) from None
    finally:
        await _stop_group(proc, exited)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise BuildFailed(f"`{command}` {how}")
    return time.monotonic() - started
