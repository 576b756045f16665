"""Running a project's install/build command as a child process, streaming its output.

The command is split with shlex and executed directly (argv, no shell), so nothing from the
project is ever interpolated into a shell line. The child gets only the environment built by
`build_env` (never the worker's own variables, which hold the platform's credentials), runs in
its own process group — and in the build's sandbox when there is one (`sandbox.py`) — and the
whole group is killed on timeout, on cancellation, and after the command exits.

The build step ends when its command does. What the command left running is found and killed
then, also when it left the process group (`setsid`, a double fork): in the sandbox its PID
namespace ends with the command; without one, every process carrying the command's
`LAUNCHDECK_BUILD_MARKER` is killed (`reaper.py`). The output pipes are then read to their end
for a short while only: a process still holding them (one that also cleared its environment) is
found by the pipes themselves and killed, and if they are still open after that, they are
closed unread. Nothing left behind can hold a build until its time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.contracts.messages import LogStream
from launchdeck.libs.launcher.reaper import MARKER_VAR, kill_marked, kill_pipe_holders
from launchdeck.libs.launcher.sandbox import BuildSandbox

OutputSink = Callable[[LogStream, str], None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_CHUNK = 64 * 1024
# A "line" without a newline (minified output, progress bars) is cut here so memory stays bounded.
MAX_RAW_LINE = 64 * 1024
KILL_GRACE_S = 3.0
# Once the command exited and its leftovers were killed: how long its output pipes may take to
# reach their end before whoever still holds them is looked for (and then, before they are
# closed unread). Reading what is buffered takes milliseconds.
DRAIN_S = 0.5
DRAIN_AFTER_KILL_S = 2.0


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
) -> tuple[asyncio.subprocess.Process, asyncio.Event, asyncio.SubprocessTransport]:
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
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited, transport


def _pipe_inodes(transport: asyncio.SubprocessTransport) -> set[int]:
    """The inodes of the child's stdout and stderr pipes, to find who else holds them."""
    inodes: set[int] = set()
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        handle = pipe.get_extra_info("pipe") if pipe is not None else None
        if handle is not None:
            with contextlib.suppress(OSError, ValueError):
                inodes.add(os.fstat(handle.fileno()).st_ino)
    return inodes


async def _drained(readers: Sequence[asyncio.Task[None]], within_s: float) -> bool:
    _, pending = await asyncio.wait(readers, timeout=within_s)
    return not pending


async def _end_leftovers(
    proc: asyncio.subprocess.Process,
    readers: Sequence[asyncio.Task[None]],
    marker: str,
    inodes: set[int],
) -> None:
    """After the command: kill its process group and every process carrying its marker, read
    its output to the end with a short deadline, kill whoever still holds the pipes, and close
    them unread if even that does not end them. Never waits longer than a few seconds."""
    _signal_group(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(kill_marked, marker.__eq__)
    if await _drained(readers, DRAIN_S):
        return
    await asyncio.to_thread(kill_pipe_holders, inodes)
    if await _drained(readers, DRAIN_AFTER_KILL_S):
        return
    for reader in readers:  # a holder this worker cannot signal: stop reading
        reader.cancel()


def _resolve(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    """Fail as an unsandboxed exec would when the program is missing or not executable (in
    the sandbox, bwrap would only say so on stderr)."""
    program = argv[0]
    if "/" in program:
        target = cwd / program
        if not target.exists():
            raise FileNotFoundError(program)
        if not os.access(target, os.X_OK) or target.is_dir():
            raise PermissionError(program)
    elif shutil.which(program, path=env.get("PATH", "")) is None:
        raise FileNotFoundError(program)


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
    marker: str | None = None,
    sandbox: BuildSandbox | None = None,
) -> float:
    """Run `argv` (see `parse_command`) in `cwd`, in `sandbox` when given; return its duration.
    Every process it starts carries `LAUNCHDECK_BUILD_MARKER=<marker>` (a fresh one when None)
    and is killed when it ends. Raises BuildFailed on failure or timeout."""
    command = shlex.join(argv)  # for messages
    marker = marker or f"run-{uuid.uuid4().hex}"
    env = {**env, MARKER_VAR: marker}
    started = time.monotonic()
    try:
        if sandbox is not None:
            _resolve(argv, cwd, env)
            spawned = await _spawn(sandbox.argv(argv, cwd, env), cwd, env)
        else:
            spawned = await _spawn(argv, cwd, env)
    except FileNotFoundError:
        raise BuildFailed(
            f"Command not found: {argv[0]!r} (commands run without a shell; "
            "use e.g. `sh -c '...'` for shell syntax)"
        ) from None
    except PermissionError:
        raise BuildFailed(f"Command {argv[0]!r} is not executable") from None
    proc, exited, transport = spawned
    assert proc.stdout is not None
    assert proc.stderr is not None
    inodes = _pipe_inodes(transport)
    readers = (
        asyncio.create_task(_pump(proc.stdout, "stdout", sink)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink)),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await exited.wait()
    except TimeoutError:
        raise BuildFailed(
            f"`{command}` did not finish within the build's time limit "
            f"({time.monotonic() - started:.0f}s); its processes were killed"
        ) from None
    finally:
        await _stop_group(proc, exited)
        await _end_leftovers(proc, readers, marker, inodes)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        transport.close()  # the pipes, if a holder kept them open
    code = proc.returncode
    assert code is not None  # `exited` was set
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise BuildFailed(f"`{command}` {how}")
    return time.monotonic() - started
