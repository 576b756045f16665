"""One run of an app's command: started through the launcher, watched, signalled, stopped — or
adopted from an engine that died.

Started: `sh -c <command>` (a Procfile line: `$PORT` expands), or an argv as it is (a container
app's `<engine> run …`: container.py), through `libs.launcher.launch`,
as builds are: in the app's sandbox when there is one (`Sandbox.for_app`: its release read-only,
its own HOME and /tmp, nothing of the platform's state), under the app's resource limits, with
exactly the environment it is given, in a session and process group of its own, cwd = the
release. Unlike a build it outlives the engine, so that apps keep serving while the engine
restarts (as Caddy does), and so:

- its stdout and stderr are FIFOs in its instance directory, not pipes to the engine. The app
  holds them read-write, so with no engine reading, a write waits (in a 1 MiB pipe buffer) instead
  of killing the app with SIGPIPE; the next engine opens them again and reads on.
- it is known by its *leader*: the process whose exit is the app's exit and whose process group
  holds the app — the sandbox's init (bubblewrap's pid 1 of the app's PID namespace, which
  exits with the app, and whose SIGKILL takes the whole namespace with it) or, unsandboxed, the
  app itself. The leader's pid and start time (clock ticks after boot, from /proc) are in the
  instance record, so a successor engine finds the same process and never a later one given
  the same pid.
- its exit is seen through a pidfd of the leader (readable when it exits), which works for a
  process this engine did not start.

Every process of the app carries `LAUNCHDECK_APP_MARKER=<instance dir>` (children inherit it), so
what left the process group (`setsid`, a double fork) is found and killed at the end too
(`libs.launcher.reaper`); in the sandbox the PID namespace ends with its init anyway.

Stopping (a replaced release draining, a deleted project, the engine told to): SIGTERM to the
app's process group — every process of it, as Heroku does —, `grace_s` to exit, then SIGKILL to
the group and to everything still carrying the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

from launchdeck.contracts.messages import LogStream
from launchdeck.libs.launcher.launch import Launched, launch
from launchdeck.libs.launcher.limits import ResourceLimits
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, kill_marked, marker_of
from launchdeck.libs.launcher.sandbox import BuildSandbox
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

LineSink = Callable[[LogStream, str], None]
STREAMS: tuple[LogStream, LogStream] = ("stdout", "stderr")

SHELL = "/bin/sh"
READ_CHUNK = 64 * 1024
MAX_RAW_LINE = 64 * 1024  # a "line" without a newline is cut here (memory stays bounded)
PIPE_SIZE = 1024 * 1024  # output held while no engine reads (Linux's default pipe-max-size)
SANDBOX_INIT_WAIT_S = 10.0  # bubblewrap sets the namespaces up in milliseconds
KILL_WAIT_S = 5.0  # after SIGKILL: the kernel's time to end the processes
PROC = Path("/proc")


class SpawnFailed(RuntimeError):
    """The command could not be started at all (no shell, bubblewrap refused)."""


def start_time_of(pid: int) -> int | None:
    """When `pid` started (field 22 of /proc/<pid>/stat), or None when it is gone or a zombie."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # the fields after the command name start at field 3


def children_of(pid: int) -> list[int]:
    """The children of `pid` (its main thread's)."""
    try:
        text = (PROC / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class AppProcess:
    """A running (or just ended) app command, started here or adopted."""

    def __init__(
        self,
        *,
        leader: int,
        start_time: int,
        marker: str,
        launched: Launched | None,
        readers: list[asyncio.Task[None]],
    ) -> None:
        self.leader = leader
        self.start_time = start_time
        self.marker = marker
        self._launched = launched  # None for an adopted process (not our child)
        self._readers = readers
        self._pidfd: int | None = None
        self.exited = asyncio.Event()
        self.started_at = time.monotonic()
        self._watch()

    # --- starting and adopting ---------------------------------------------------------

    @classmethod
    async def spawn(
        cls,
        *,
        directory: Path,
        marker: str,
        command: str | Sequence[str],
        release: Path,
        env: Mapping[str, str],
        sandbox: BuildSandbox | None,
        limits: ResourceLimits | None,
        sink: LineSink,
    ) -> Self:
        """Start `command` in `release` (see the module docstring): a string is a shell line,
        a sequence an argv. Raises SpawnFailed."""
        argv = [SHELL, "-c", command] if isinstance(command, str) else list(command)
        paths = [directory / "stdout", directory / "stderr"]
        writers: list[int] = []
        readers: list[int] = []
        try:
            for path in paths:
                path.unlink(missing_ok=True)
                os.mkfifo(path, 0o600)
                readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
                writer = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                writers.append(writer)
                with contextlib.suppress(OSError):  # a smaller buffer still works
                    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            launched = await launch(
                argv,
                cwd=release,
                env={**env, APP_MARKER_VAR: marker},
                sandbox=sandbox,
                limits=limits,
                stdout=writers[0],
                stderr=writers[1],
            )
        except (OSError, ValueError) as exc:
            for fd in readers:
                os.close(fd)
            raise SpawnFailed(f"the app could not be started: {exc}") from exc
        finally:
            for fd in writers:
                os.close(fd)  # the app holds its own copies
        tasks = [
            asyncio.create_task(_pump(fd, stream, sink))
            for fd, stream in zip(readers, STREAMS, strict=True)
        ]
        leader = launched.pid if sandbox is None else await _sandbox_init(launched)
        start = start_time_of(leader) if leader is not None else None
        if leader is None or start is None:
            # It ended before it could be watched (bubblewrap refused, or the command was over
            # at once): an AppProcess that has already exited, its output still read.
            await launched.exited.wait()
            process = cls(
                leader=launched.pid, start_time=0, marker=marker, launched=launched, readers=tasks
            )
            process.exited.set()
            return process
        return cls(leader=leader, start_time=start, marker=marker, launched=launched, readers=tasks)

    @classmethod
    def adopt(
        cls, *, pid: int, start_time: int, directory: Path, marker: str, sink: LineSink
    ) -> Self | None:
        """The app process a previous engine started, if it still runs: the same pid, started at
        the same time, carrying the instance's marker. None when it is gone."""
        if start_time_of(pid) != start_time or marker_of(pid, APP_MARKER_VAR) != marker:
            return None
        readers: list[int] = []
        try:
            for name in ("stdout", "stderr"):
                readers.append(
                    os.open(directory / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                )
        except OSError:
            for fd in readers:
                os.close(fd)
            readers = []  # its output is lost, the process is not
        tasks = [
            asyncio.create_task(_pump(fd, stream, sink))
            for fd, stream in zip(readers, STREAMS, strict=False)
        ]
        process = cls(
            leader=pid, start_time=start_time, marker=marker, launched=None, readers=tasks
        )
        if start_time_of(pid) != start_time:  # it ended (or was replaced) while we looked
            process.exited.set()
        return process

    # --- watching ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Set `exited` when the leader exits (a pidfd becomes readable then)."""
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.leader)
        except OSError:
            self.exited.set()
            return
        if start_time_of(self.leader) != self.start_time:  # the pid is someone else's now
            os.close(pidfd)
            self.exited.set()
            return

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._pidfd = None
            self.exited.set()

        loop.add_reader(pidfd, on_exit)
        self._pidfd = pidfd

    @property
    def running(self) -> bool:
        return not self.exited.is_set()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at

    async def exit_description(self) -> str:
        """How it ended, for people: `exited with code 1`, `was killed by SIGKILL`."""
        # The launcher's own child (bubblewrap outside the namespace) ends right after.
        code = await self.exit_code()
        if code is None:
            return "exited"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        with contextlib.suppress(ValueError):
            if code > 128:  # the shell's way of saying its command was killed
                return f"exited with code {code} ({signal.Signals(code - 128).name})"
        return f"exited with code {code}"

    async def exit_code(self) -> int | None:
        """The exit code (negative: killed by that signal), once it exited; None when it is
        not known (an adopted process: not this engine's child)."""
        await self.exited.wait()
        if self._launched is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._launched.exited.wait(), KILL_WAIT_S)
        return self._launched.process.returncode

    async def output_done(self, timeout_s: float = 1.0) -> None:
        """Wait (briefly) until its output is read to the end."""
        if self._readers:
            await asyncio.wait(self._readers, timeout=timeout_s)

    # --- stopping ------------------------------------------------------------------------

    def signal_group(self, sig: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.leader, sig)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the app's process group, `grace_s` to exit, then SIGKILL it and everything
        carrying its marker."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), grace_s)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL the app and whatever it left running; wait until the leader is gone."""
        self.signal_group(signal.SIGKILL)
        await asyncio.to_thread(kill_marked, self.marker.__eq__, APP_MARKER_VAR)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), KILL_WAIT_S)
        await self.output_done()

    async def detach(self) -> None:
        """Stop watching and reading, leave the process running (the engine is stopping: its
        successor adopts it)."""
        pidfd = self._pidfd
        if pidfd is not None:
            asyncio.get_running_loop().remove_reader(pidfd)
            os.close(pidfd)
            self._pidfd = None
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _sandbox_init(launched: Launched) -> int | None:
    """The sandbox's init: bubblewrap's child, pid 1 of the app's PID namespace, leader of
    the app's session. None when bubblewrap ended first."""
    deadline = time.monotonic() + SANDBOX_INIT_WAIT_S
    while time.monotonic() < deadline and not launched.exited.is_set():
        children = children_of(launched.pid)
        if children:
            return children[0]
        await asyncio.sleep(0.002)
    return None


async def _pump(fd: int, stream: LogStream, sink: LineSink) -> None:
    """Forward the FIFO `fd` to `sink` line by line until every writer closed it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
    )
    pending = b""
    try:
        while chunk := await reader.read(READ_CHUNK):
            data = pending + chunk if pending else chunk
            parts = data.split(b"\n")
            pending = parts.pop()
            for raw in parts:
                sink(stream, raw.removesuffix(b"\r").decode("utf-8", "replace"))
            while len(pending) > MAX_RAW_LINE:
                sink(stream, pending[:MAX_RAW_LINE].decode("utf-8", "replace"))
                pending = pending[MAX_RAW_LINE:]
        if pending:
            sink(stream, pending.removesuffix(b"\r").decode("utf-8", "replace"))
    finally:
        transport.close()
