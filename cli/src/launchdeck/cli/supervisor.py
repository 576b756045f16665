"""A small process supervisor: run child processes, pass on their output line by line, restart
the ones that exit with exponential backoff, and stop them all — with anything they started —
on shutdown.

Each child runs in its own session (process group), so a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in order: SIGTERM to the child, a grace period, then
SIGKILL to its whole group. On Linux a child also gets SIGTERM if the supervisor itself dies
(`PR_SET_PDEATHSIG`), so not even `kill -9` of the supervisor leaves orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

OutputHandler = Callable[[str, str], None]
"""Called with (child name, line) for every line the child prints (stdout and stderr)."""
AnnounceHandler = Callable[[str, str], None]
"""Called with (child name, message) for starts, exits, restarts and stops."""


_LINE_LIMIT = 1 << 20  # longer lines are passed on in pieces


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial_s`, doubling up to `max_s`; back to `initial_s` after a child
    ran `reset_after_s` (it was healthy, the new exit is a new incident)."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def next_delay(self, previous_s: float | None, ran_for_s: float) -> float:
        if previous_s is None or ran_for_s >= self.reset_after_s:
            return self.initial_s
        return min(previous_s * 2, self.max_s)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    pids: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    spawned: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        on_output: OutputHandler,
        on_announce: AnnounceHandler,
        backoff: Backoff | None = None,
        grace_s: float = 10.0,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = {spec.name: _Child(spec) for spec in specs}
        self._on_output = on_output
        self._on_announce = on_announce
        self._backoff = backoff or Backoff()
        self._grace_s = grace_s
        self._stopping = asyncio.Event()
        self._preexec = _parent_death_signal()

    # Introspection (used by `launchdeck dev` and by the tests) ----------------

    def pid(self, name: str) -> int | None:
        process = self._children[name].process
        return process.pid if process is not None and process.returncode is None else None

    def pids(self, name: str) -> list[int]:
        """Every pid this child has had, in order."""
        return list(self._children[name].pids)

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    # Lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start every child; return once each has been spawned (or failed to be)."""
        for child in self._children.values():
            child.task = asyncio.create_task(self._keep_running(child), name=child.spec.name)
        await asyncio.gather(*(c.spawned.wait() for c in self._children.values()))

    async def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every child, SIGKILL the groups of those still running after the grace
        period, and return once every child has been reaped."""
        grace = self._grace_s if grace_s is None else grace_s
        self._stopping.set()
        running = [c for c in self._children.values() if c.process and c.process.returncode is None]
        for child in running:
            self._on_announce(child.spec.name, "stopping")
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        tasks = [c.task for c in self._children.values() if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for child in self._children.values():
            if child.task in pending and child.process is not None:
                self._on_announce(child.spec.name, f"did not stop within {grace:g}s; killing it")
                kill_group(child.process.pid, signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)

    def kill(self) -> None:
        """SIGKILL every child's group at once (a second Ctrl-C during `stop`)."""
        self._stopping.set()
        for child in self._children.values():
            if child.process is not None and child.process.returncode is None:
                kill_group(child.process.pid, signal.SIGKILL)

    async def _keep_running(self, child: _Child) -> None:
        delay: float | None = None
        while not self._stopping.is_set():
            started = time.monotonic()
            returncode = await self._run_once(child)
            if self._stopping.is_set():
                self._on_announce(child.spec.name, f"stopped ({describe_exit(returncode)})")
                return
            ran_for = time.monotonic() - started
            delay = self._backoff.next_delay(delay, ran_for)
            child.restarts += 1
            self._on_announce(
                child.spec.name,
                f"{describe_exit(returncode)} after {ran_for:.1f}s; "
                f"restarting in {delay:g}s (restart #{child.restarts})",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _run_once(self, child: _Child) -> int:
        spec = child.spec
        # Our own pipe rather than asyncio's: `Process.wait()` would otherwise also wait for
        # every process holding the pipe (a grandchild) before reporting the child's exit.
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                preexec_fn=self._preexec,
            )
        except OSError as exc:
            os.close(read_fd)
            self._on_announce(spec.name, f"cannot start: {exc}")
            return 127
        finally:
            os.close(write_fd)
            child.spawned.set()
        child.process = process
        child.pids.append(process.pid)
        self._on_announce(spec.name, f"started (pid {process.pid})")
        if self._stopping.is_set():  # stop() ran while we were spawning
            process.send_signal(signal.SIGTERM)
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        pump = asyncio.create_task(self._pump(spec.name, reader))
        try:
            returncode = await process.wait()
            # Whatever the child left behind in its group goes with it (and frees the pipe).
            kill_group(process.pid, signal.SIGKILL)
            await asyncio.wait({pump}, timeout=5.0)
            if pump.done() and not pump.cancelled() and pump.exception() is not None:
                # Output could not be written (closed terminal): keep supervising anyway.
                self._on_announce(spec.name, f"output lost: {pump.exception()!r}")
        finally:
            pump.cancel()
            transport.close()
        return returncode

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self._emit(name, exc.partial)
                return
            except asyncio.LimitOverrunError as exc:
                # A line longer than the buffer: pass it on in pieces rather than fail.
                raw = await stream.readexactly(exc.consumed)
            self._emit(name, raw)

    def _emit(self, name: str, raw: bytes) -> None:
        self._on_output(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
