"""Running a project's install/build command as a child process, streaming its output.

The command is split with shlex and executed directly (argv, no shell), so nothing from the
project is ever interpolated into a shell line. It starts through the launcher of user code
(`libs.launcher.launch`, the same door the deploy-engine's apps go through): the child gets only
the environment built by `build_env` (never the worker's own variables, which hold the
platform's credentials), runs in its own process group — in the build's sandbox when there is
one (`sandbox.py`), under the build's resource limits (`limits.py`) — and the whole group is
killed on timeout, on cancellation (a cancelled build, a worker shutting down), and after the
command exits.

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
import os
import shlex
import signal
import sys
import sysconfig
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from launchdeck.build_worker.errors import BuildFailed, BuildTimedOut
from launchdeck.contracts.messages import LogStream
from launchdeck.libs.launcher.launch import Launched, launch
from launchdeck.libs.launcher.limits import ResourceLimits
from launchdeck.libs.launcher.reaper import MARKER_VAR, kill_marked, kill_pipe_holders
from launchdeck.libs.launcher.sandbox import BuildSandbox

# Where a command's output goes: one call per read of a pipe, with the complete lines read
# (without their newlines). It returns None once it took them all, or something to await until
# it has (the log is backed up: `LogPublisher.write_output`), which holds the reader and so,
# through its pipe, the command.
OutputSink = Callable[[LogStream, list[str]], Awaitable[None] | None]


def each_line(write: Callable[[LogStream, str], None]) -> OutputSink:
    """An `OutputSink` handing each line to `write`, never holding the command back."""

    def sink(stream: LogStream, lines: list[str]) -> None:
        for line in lines:
            write(stream, line)

    return sink


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
    """The PATH builds run with: the worker's, so the machine's toolchains are found — without
    the worker's own virtualenv, whose `python3` would lend a build (and a Python app's
    dependencies, installed with it) the platform's packages, and which has no pip."""
    path = os.environ.get("PATH") or DEFAULT_PATH
    own = _own_virtualenv_bin()
    if own is None:
        return path
    return os.pathsep.join(d for d in path.split(os.pathsep) if os.path.realpath(d or ".") != own)


def _own_virtualenv_bin() -> str | None:
    if sys.prefix == sys.base_prefix:
        return None
    return os.path.realpath(sysconfig.get_path("scripts"))


# The platform's own variables (its credentials and settings): never passed on to a build, not
# even when the operator's pass-through list names one by mistake.
PLATFORM_VARIABLE_PREFIXES = ("LAUNCHDECK_", "NATS_")
PLATFORM_VARIABLES = frozenset({"DATABASE_URL"})


def is_platform_variable(name: str) -> bool:
    return name in PLATFORM_VARIABLES or name.startswith(PLATFORM_VARIABLE_PREFIXES)


def build_env(
    home: Path,
    project_vars: Mapping[str, str] | None = None,
    *,
    tmpdir: Path | None = None,
    passthrough: Sequence[str] = (),
    tools: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Only what a build needs, built from nothing (never the worker's environment, which holds
    the platform's credentials): `build_path()`, a fresh HOME, LANG, TMPDIR (the attempt's own
    temporary directory; /tmp, which the sandbox makes the attempt's own), CI=true, and the
    worker variables named in `passthrough` (the operator's choice, e.g. the CA bundle; never a
    platform variable). `tools` (e.g. the package managers' cache directories) come next, then
    the project's own `build` variables, which win."""
    env = {
        "PATH": build_path(),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmpdir) if tmpdir is not None else "/tmp",
        "CI": "true",
    }
    env.update(
        {
            name: os.environ[name]
            for name in passthrough
            if name in os.environ and not is_platform_variable(name)
        }
    )
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
    """Forward `stream` to `sink` as it arrives, the complete lines of each read at once
    (decoded and split in one go: this is the per-line hot path of a build's log)."""
    pending = b""
    while chunk := await stream.read(READ_CHUNK):
        data = pending + chunk if pending else chunk
        end = data.rfind(b"\n")
        lines: list[str] = []
        if end >= 0:
            # Whole lines only: a character split across reads stays in `pending` whole.
            text = data[: end + 1].decode("utf-8", "replace")
            lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
            lines.pop()  # what follows the last newline: nothing
            pending = data[end + 1 :]
        else:
            pending = data
        while len(pending) > MAX_RAW_LINE:
            lines.append(pending[:MAX_RAW_LINE].decode("utf-8", "replace"))
            pending = pending[MAX_RAW_LINE:]
        if lines and (wait := sink(name, lines)) is not None:
            await wait
    if pending:
        wait = sink(name, [pending.removesuffix(b"\r").decode("utf-8", "replace")])
        if wait is not None:
            await wait


async def _drained(readers: Sequence[asyncio.Task[None]], within_s: float) -> bool:
    _, pending = await asyncio.wait(readers, timeout=within_s)
    return not pending


async def _end_leftovers(
    launched: Launched,
    readers: Sequence[asyncio.Task[None]],
    marker: str,
    inodes: set[int],
) -> None:
    """After the command: kill its process group and every process carrying its marker, read
    its output to the end with a short deadline, kill whoever still holds the pipes, and close
    them unread if even that does not end them. Never waits longer than a few seconds."""
    launched.signal_group(signal.SIGKILL)
    await asyncio.to_thread(kill_marked, marker.__eq__)
    if await _drained(readers, DRAIN_S):
        return
    await asyncio.to_thread(kill_pipe_holders, inodes)
    if await _drained(readers, DRAIN_AFTER_KILL_S):
        return
    for reader in readers:  # a holder this worker cannot signal: stop reading
        reader.cancel()


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    sink: OutputSink,
    timeout_s: float,
    marker: str | None = None,
    sandbox: BuildSandbox | None = None,
    limits: ResourceLimits | None = None,
) -> float:
    """Run `argv` (see `parse_command`) in `cwd`, in `sandbox` and under `limits` when given;
    return its duration. Every process it starts carries `LAUNCHDECK_BUILD_MARKER=<marker>` (a
    fresh one when None) and is killed when it ends, or when the caller is cancelled. Raises
    BuildFailed on failure, BuildTimedOut past `timeout_s`."""
    command = shlex.join(argv)  # for messages
    marker = marker or f"run-{uuid.uuid4().hex}"
    env = {**env, MARKER_VAR: marker}
    started = time.monotonic()
    try:
        launched = await launch(argv, cwd=cwd, env=env, sandbox=sandbox, limits=limits)
    except FileNotFoundError:
        raise BuildFailed(
            f"Command not found: {argv[0]!r} (commands run without a shell; "
            "use e.g. `sh -c '...'` for shell syntax)"
        ) from None
    except PermissionError:
        raise BuildFailed(f"Command {argv[0]!r} is not executable") from None
    proc = launched.process
    assert proc.stdout is not None
    assert proc.stderr is not None
    inodes = launched.pipe_inodes()
    readers = (
        asyncio.create_task(_pump(proc.stdout, "stdout", sink)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink)),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await launched.exited.wait()
    except TimeoutError:
        raise BuildTimedOut(f"while running `{command}`") from None
    finally:
        # Also on cancellation (the build was cancelled, the worker shuts down): SIGTERM, a
        # moment, SIGKILL, then whatever the command left running, within a few seconds.
        await launched.stop(KILL_GRACE_S)
        await _end_leftovers(launched, readers, marker, inodes)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        launched.transport.close()  # the pipes, if a holder kept them open
    code = proc.returncode
    assert code is not None  # `exited` was set
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise BuildFailed(f"`{command}` {how}")
    return time.monotonic() - started
