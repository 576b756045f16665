"""Starting one command of user code: the one door builds and apps both go through.

`launch` starts `argv` (a list, never a shell line) as a child of this process:
- in its own session and process group, so the whole group can be signalled (`Launched.stop`);
- in `sandbox` when given (anything with `argv()`: the build's `BuildSandbox`, an app's), which
  wraps the command in bubblewrap;
- under `limits` (`limits.ResourceLimits`: address space, open files, processes), set in the
  child before it executes, so they hold with and without the sandbox;
- with stdin from /dev/null and stdout/stderr as pipes the caller reads (or descriptors the
  caller gives: an app's output goes to FIFOs that outlive the engine, deploy_engine/apps);
- with exactly the environment it is given (the caller builds it from nothing: never this
  process's own, which holds the platform's credentials).

`Launched.exited` is set when the command itself exits, not when its pipes close: a background
grandchild still holding them must not delay that (the reaper ends such processes:
`reaper.kill_marked`, `reaper.kill_pipe_holders` with `Launched.pipe_inodes()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from launchdeck.libs.launcher.limits import ResourceLimits

READ_LIMIT = 64 * 1024


class Confinement(Protocol):
    """What confines a command (the sandbox): the argv that runs `command` inside it."""

    def argv(self, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[str]: ...


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the child's exit on its own: `Process.wait()` also waits for the pipes to close,
    which a background grandchild holding them open would delay forever."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


@dataclass(frozen=True)
class Launched:
    """A started command: its process (`stdout`, `stderr` streams, `returncode`), the event set
    when it exits, and its transport (the pipes)."""

    process: asyncio.subprocess.Process
    exited: asyncio.Event
    transport: asyncio.SubprocessTransport

    @property
    def pid(self) -> int:
        """Also its process group's id (it leads a session of its own)."""
        return self.process.pid

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the command's whole process group (nothing if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the group, give it `grace_s` to exit, then SIGKILL whatever is left (and wait
        up to `grace_s` for the exit to be seen)."""
        if not self.exited.is_set():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), grace_s)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), grace_s)

    def pipe_inodes(self) -> set[int]:
        """The inodes of the command's stdout and stderr pipes, to find who else holds them."""
        inodes: set[int] = set()
        for fd in (1, 2):
            pipe = self.transport.get_pipe_transport(fd)
            handle = pipe.get_extra_info("pipe") if pipe is not None else None
            if handle is not None:
                with contextlib.suppress(OSError, ValueError):
                    inodes.add(os.fstat(handle.fileno()).st_ino)
        return inodes


def check_program(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    """Raise FileNotFoundError or PermissionError as an exec of `argv` would (in a sandbox,
    bwrap would only say so on stderr, after starting)."""
    program = argv[0]
    if "/" in program:
        target = cwd / program
        if not target.exists():
            raise FileNotFoundError(program)
        if not os.access(target, os.X_OK) or target.is_dir():
            raise PermissionError(program)
    elif shutil.which(program, path=env.get("PATH", "")) is None:
        raise FileNotFoundError(program)


async def launch(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    sandbox: Confinement | None = None,
    limits: ResourceLimits | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> Launched:
    """Start `argv` in `cwd` with exactly `env`, in `sandbox` and under `limits` when given.
    `stdout`/`stderr`: descriptors the command writes to instead of pipes (its `process.stdout`
    and `.stderr` are then None). Raises FileNotFoundError or PermissionError when the program
    cannot be run."""
    command = list(argv)
    if sandbox is not None:
        check_program(command, cwd, env)
        command = sandbox.argv(command, cwd, env)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAwareProtocol(limit=READ_LIMIT, loop=loop),
        *command,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout is None else stdout,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
        start_new_session=True,  # its own process group, so the group can be killed
        preexec_fn=limits.preexec() if limits is not None else None,
    )
    process = asyncio.subprocess.Process(transport, protocol, loop)
    return Launched(process=process, exited=protocol.exited, transport=transport)
