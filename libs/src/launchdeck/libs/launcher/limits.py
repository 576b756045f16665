"""Resource limits of user code (builds, apps): rlimits set in the child before it runs.

A build or an app runs whatever its repository says. The sandbox (`sandbox.py`) limits what it
can see; these limit how much it can take of the machine it shares with the platform and with
every other project, so one runaway (a leak, a fork loop, a descriptor leak) fails on its own
instead of taking the engine or the worker down with it:

- address space (`RLIMIT_AS`): virtual memory, not resident memory. Runtimes reserve far more
  than they use (Node.js's V8 reserves ~1 GiB for its code range alone, Go and the JVM more),
  so it is a bound on runaway growth, not a memory quota; a real memory cap needs a cgroup
  (a container: docs/operations.md). V8 reserves ~10 GiB for each WebAssembly memory, and
  Node.js uses WebAssembly where one would not expect it: its built-in `fetch()` (undici's HTTP
  parser, used by corepack among others) fails with `RangeError: WebAssembly.instantiate(): Out
  of memory` under 8 GiB and works at 16 GiB (measured, Node.js 20). Builds default to 16 GiB;
- open files (`RLIMIT_NOFILE`): descriptors per process, sockets included;
- processes (`RLIMIT_NPROC`): the kernel counts every process *and thread* of the real user id
  the command runs as — the service's own user outside the sandbox's user namespace — not only
  the command's, and does not apply it to root at all. It stops a fork bomb under a dedicated
  service user; under root it is recorded but has no effect.

Limits are set between fork and exec (`preexec`, only `setrlimit` calls: nothing that takes a
lock another thread of the parent could hold), so they apply from the command's first
instruction, to bubblewrap and to everything either starts; a command cannot raise them again
(soft and hard limits are both set). A limit above the service's own hard limit is lowered to
it (raising a hard limit needs privileges the service should not have).
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

from launchdeck.libs.settings import SettingsError, env_int

MIB = 1024 * 1024


@dataclass(frozen=True)
class ResourceLimits:
    """None for a limit means: the service's own (inherited) limit."""

    address_space_bytes: int | None = 8 * 1024 * MIB
    open_files: int | None = 16_384
    processes: int | None = 4_096

    @classmethod
    def from_env(cls, prefix: str, defaults: ResourceLimits | None = None) -> ResourceLimits:
        """`<prefix>_LIMIT_AS_MB`, `<prefix>_LIMIT_NOFILE`, `<prefix>_LIMIT_NPROC` (prefix
        `LAUNCHDECK_BUILD` for builds, `LAUNCHDECK_APP` for apps); 0 means no limit of our own
        (the service's, inherited)."""
        base = defaults or cls()
        names = (f"{prefix}_LIMIT_AS_MB", f"{prefix}_LIMIT_NOFILE", f"{prefix}_LIMIT_NPROC")
        address_space_mb = env_int(names[0], (base.address_space_bytes or 0) // MIB)
        open_files = env_int(names[1], base.open_files or 0)
        processes = env_int(names[2], base.processes or 0)
        for name, value in zip(names, (address_space_mb, open_files, processes), strict=True):
            if value < 0:
                raise SettingsError(f"environment variable {name} must be 0 (none) or more")
        if 0 < open_files < 16:
            raise SettingsError(f"environment variable {names[1]} must be 0 (none) or 16 or more")
        return cls(
            address_space_bytes=address_space_mb * MIB or None,
            open_files=open_files or None,
            processes=processes or None,
        )

    def rlimits(self) -> tuple[tuple[int, int], ...]:
        """(resource, value) pairs to set, each at most the current hard limit."""
        wanted = (
            (resource.RLIMIT_AS, self.address_space_bytes),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_NPROC, self.processes),
        )
        pairs: list[tuple[int, int]] = []
        for which, value in wanted:
            if value is None:
                continue
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            pairs.append((which, value))
        return tuple(pairs)

    def preexec(self) -> Callable[[], None] | None:
        """A `preexec_fn` for `subprocess`/asyncio that sets the limits in the child, or None
        when there is nothing to set. The pairs are computed here, in the parent: the child
        only calls `setrlimit`."""
        pairs = self.rlimits()
        if not pairs:
            return None

        def apply() -> None:
            for which, value in pairs:
                resource.setrlimit(which, (value, value))

        return apply

    def describe(self) -> dict[str, int | None]:
        """For the service's start-up log line."""
        return {
            "address_space_mb": (
                self.address_space_bytes // MIB if self.address_space_bytes else None
            ),
            "open_files": self.open_files,
            "processes": self.processes,
        }
