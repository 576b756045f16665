"""What the engine knows about each app process, on disk, so that the next engine knows it too.

    <state>/apps/
        .lock                        held (flock) by the running engine: one engine per state dir
        <instance id>/
            instance.json            the `InstanceRecord` below
            stdout, stderr           FIFOs the process writes its output to (`process.py`)
            home/, tmp/              its HOME and /tmp, read-write (its sandbox's only such dirs)
            sandbox-etc/             the passwd and group files its sandbox shows
        .seq/<deployment>.<process>  the app log's line numbers handed out so far (`app_logs.py`)

An *instance* is one process type (`web`, `worker`, …) of one deployment, in one *slot*: the
project's production, or one preview build. It keeps its directory, port and record across
restarts of its process; `pid` and `start_time` are those of the current run. The record is
written before the process starts (`starting`, no pid) and after every change, replaced
atomically (write, then rename), so a killed engine leaves either the old or the new record.
Apps outlive the engine: its successor reads these records and adopts what still runs
(`fleet.Fleet.recover`).

Statuses: `starting` (a candidate being health-checked: not routed; a successor stops it, the
redelivered deploy starts a new one), `serving` (the slot's live instance: routed, supervised,
restarted when it crashes) and `draining` (replaced: being stopped).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Literal

import msgspec

from launchdeck.contracts.statuses import Environment

InstanceStatus = Literal["starting", "serving", "draining"]
RECORD = "instance.json"
PRODUCTION = "production"
PREVIEW_PREFIX = "preview:"


def preview_slot(build_id: str) -> str:
    return f"{PREVIEW_PREFIX}{build_id}"


def slot_of(environment: Environment, build_id: str) -> str:
    """Production is one slot per project; each preview build is a slot of its own."""
    return PRODUCTION if environment == "production" else preview_slot(build_id)


class InstanceRecord(msgspec.Struct, kw_only=True):
    id: str
    project: str
    project_id: str
    deployment_id: str
    build_id: str
    environment: Environment
    slot: str
    process: str  # the process type: `web` gets the port, route and health check
    command: str
    release: str  # the release directory it runs in
    port: int | None = None
    health_path: str = "/"
    commit_sha: str | None = None
    status: InstanceStatus = "starting"
    # The current run: the process group leader (the sandbox's init, or the app itself) and its
    # start time in clock ticks after boot (/proc/<pid>/stat), which tells it from a later
    # process given the same pid.
    pid: int | None = None
    start_time: int | None = None
    created_at: float = 0.0  # time.time(): the oldest preview is stopped first
    activated_at: float | None = None  # when it started serving
    # A container app's (container.py): its container's name, memory limit (MiB) and CPUs.
    container: str | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    # In a crash loop: its deployment was reported `unhealthy` (a successor engine reports it
    # `active` again once it serves).
    unhealthy: bool = False

    @property
    def is_web(self) -> bool:
        return self.port is not None


_encoder = msgspec.json.Encoder()


def new_instance_id() -> str:
    return secrets.token_hex(6)


class InstanceStore:
    """The `apps/` directory: instance records and their directories."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self._lock_fd: int | None = None

    def dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def marker(self, instance_id: str) -> str:
        """What every process of the instance carries in `APP_MARKER_VAR` (inherited by its
        children): how they are found even when they left its process group."""
        return str(self.dir(instance_id))

    def instance_of_marker(self, marker: str) -> str | None:
        """The instance id a marker names, if it is one of this store's; None otherwise."""
        path = Path(marker)
        return path.name if path.parent == self.root else None

    def lock(self) -> None:
        """Hold the store for this engine's life (blocking while another engine holds it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def locked_by_other(self) -> bool:
        """Whether another live engine holds the store (a try, not a wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken here
        return False

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def create(self, record: InstanceRecord) -> Path:
        directory = self.dir(record.id)
        for sub in ("home", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        record.created_at = record.created_at or time.time()
        self.save(record)
        return directory

    def save(self, record: InstanceRecord) -> None:
        directory = self.dir(record.id)
        tmp = directory / f".{RECORD}.{secrets.token_hex(4)}"
        tmp.write_bytes(_encoder.encode(record))
        os.replace(tmp, directory / RECORD)

    def load_all(self) -> list[InstanceRecord]:
        """Every readable record (a directory without one is a leftover: `leftovers`)."""
        found: list[InstanceRecord] = []
        if not self.root.is_dir():
            return found
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
                record = msgspec.json.decode((entry / RECORD).read_bytes(), type=InstanceRecord)
                if record.id == entry.name:
                    found.append(record)
        return found

    def leftovers(self, known: set[str]) -> list[Path]:
        """Instance directories with no (readable) record among `known`."""
        if not self.root.is_dir():
            return []
        return [
            entry
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in known
        ]

    def remove(self, instance_id: str) -> None:
        directory = self.dir(instance_id)
        if directory.is_dir():
            doomed = self.root / f".rm-{instance_id}-{secrets.token_hex(4)}"
            with contextlib.suppress(OSError):
                os.rename(directory, doomed)
                directory = doomed
            shutil.rmtree(directory, ignore_errors=True)

    def clean_leftovers(self) -> None:
        """What an interrupted removal left (`.rm-*`)."""
        if self.root.is_dir():
            for entry in self.root.glob(".rm-*"):
                shutil.rmtree(entry, ignore_errors=True)

    @property
    def seq_dir(self) -> Path:
        return self.root / SEQ_DIR


SEQ_DIR = ".seq"
