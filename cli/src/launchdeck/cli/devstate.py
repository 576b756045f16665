"""The dev state directory: `dev.json`, the secret key, the lock, and stable port choices.

`dev.json` is how scripts (and the client commands) find a running `launchdeck dev`: it holds
`api_url`, `dashboard_url` (the web dashboard, served by the control-api at `/`), `edge_url`,
`admin_token`, `database_url`, `nats_url` (and each NATS node's URL and process id, `nats_urls`
and `nats_pids`), the operator's NATS login (`nats_user`, `nats_password`, for the NATS CLI),
the ports chosen (which the next run reuses when they are free, so URLs stay the same) and
`ready`. It is written as soon as the ports are chosen with `"ready": false` (so a crashed
start-up still leaves the pids and ports the next run needs to clean up and reuse), rewritten
with `"ready": true` once every service answers (see `dev.readiness`), and with `"ready": false`
again when `launchdeck dev` stops.

The directory and what it holds are private (0700, files 0600): dev.json, the secret key and the
passwords (`dev.credentials`) are the keys to the whole platform.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launchdeck.devservers import free_port, port_is_free
from launchdeck.libs import tokens

DEFAULT_STATE_DIR = ".launchdeck"
# Standard ports of Postgres, NATS, HTTP(S) and Caddy's admin API: possibly taken, never used.
RESERVED_PORTS = frozenset({80, 443, 2019, 4222, 5432})


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`LAUNCHDECK_STATE_DIR`, else `.launchdeck/` in the current directory (absolute)."""
    env = os.environ if environ is None else environ
    return Path(env.get("LAUNCHDECK_STATE_DIR") or DEFAULT_STATE_DIR).expanduser().resolve()


def dev_json_path(directory: Path) -> Path:
    return directory / "dev.json"


@dataclass(frozen=True)
class DevInfo:
    """The content of `dev.json`."""

    api_url: str
    edge_url: str
    admin_token: str
    database_url: str
    nats_url: str
    state_dir: str
    ports: dict[str, int] = field(default_factory=dict)
    pid: int | None = None
    # The embedded NATS: `nats_url` is every node comma-separated (what NATS_URL takes) and
    # `nats_pid` the first node's process, as before clusters; the lists name each node.
    nats_pid: int | None = None
    nats_urls: list[str] | None = None
    nats_pids: list[int] | None = None
    example_url: str | None = None
    ready: bool = False
    # The operator's login to the embedded NATS (`nats --user … --password …`); unset with an
    # external NATS_URL, whose credentials are the caller's.
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)
    # The web dashboard (the control-api serves it at `/`): sign in with `admin_token`.
    dashboard_url: str | None = None


def make_private_dir(path: Path, mode: int = 0o700) -> None:
    """Create `path` (and its parents) if missing, and give it `mode` (0700: its owner only)
    whatever it had: a state directory made by an older run, or by `mkdir`, is 0755."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)


def write_private_file(path: Path, text: str) -> None:
    """Write atomically (temp file + rename) with mode 0600: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_dev_json(path: Path, info: DevInfo) -> None:
    data = {k: v for k, v in asdict(info).items() if v is not None}
    write_private_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def mark_not_ready(path: Path, recorded: Mapping[str, Any]) -> None:
    """Rewrite `recorded` (a previous run's dev.json) with `"ready": false` when it says ready:
    that run was killed without its clean-up, and this one has not started anything yet."""
    if recorded.get("ready") is True:
        data = {**recorded, "ready": False}
        write_private_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_dev_json(path: Path) -> dict[str, Any]:
    """The recorded state, or `{}` when missing or unreadable (a fresh start)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_ports(data: Mapping[str, Any]) -> dict[str, int]:
    ports = data.get("ports")
    if not isinstance(ports, dict):
        return {}
    return {str(k): v for k, v in ports.items() if isinstance(v, int)}


async def admin_token(conn: Any, secret: str, previous: object) -> str:
    """The previous run's admin token while it still verifies and its `api_tokens` row is live
    (stable for scripts), else a new one, recorded in that table (on `conn`, the platform's
    database, migrated) so that the API accepts it and an operator can revoke it."""
    if isinstance(previous, str) and previous:
        with contextlib.suppress(tokens.InvalidToken):
            claims = tokens.verify(secret, previous)
            if "admin" in claims.scopes and await tokens.is_registered_and_live(conn, claims.jti):
                return previous
    token, claims = tokens.mint(secret, subject="admin", scopes=["admin"])
    await tokens.register(conn, claims, name="admin", created_by="launchdeck dev", token=token)
    return token


def _token() -> str:
    return secrets.token_urlsafe(48)


def load_or_create_secret(path: Path, make: Callable[[], str] = _token) -> str:
    """A secret kept in `path` (the operator secret that signs tokens, a password): created
    once by `make` with mode 0600 and reused after (an existing file is made 0600 too)."""
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            path.chmod(0o600)
            return secret
    secret = make()
    write_private_file(path, secret + "\n")
    return secret


def read_secret(path: Path) -> str | None:
    """A secret kept in `path` if there is one (made 0600), else None: never created."""
    if not path.exists():
        return None
    path.chmod(0o600)
    return path.read_text().strip() or None


def choose_port(
    candidates: Iterable[int | None],
    *,
    taken: set[int],
    host: str = "127.0.0.1",
) -> int:
    """The first candidate that is free (and not reserved or already taken), else a free port.

    The chosen port is added to `taken` so the caller's next choice differs.
    """
    for port in candidates:
        if port is None or port in RESERVED_PORTS or port in taken or not 0 < port < 65536:
            continue
        if port_is_free(port, host):
            taken.add(port)
            return port
    while True:
        port = free_port(host)
        if port not in RESERVED_PORTS and port not in taken:
            taken.add(port)
            return port


class StateDirBusy(Exception):
    """Another `launchdeck dev` holds the state directory."""


@contextlib.contextmanager
def dev_lock(directory: Path) -> Iterator[None]:
    """Exclusive use of the state directory; the kernel drops the lock if we die."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "dev.lock"
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise StateDirBusy(
                f"another `launchdeck dev` (pid {holder}) is using {directory}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
