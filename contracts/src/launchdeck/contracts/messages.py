"""Every message that crosses NATS, as msgspec Structs (JSON on the wire).

Rules (see docs/contracts.md): each Struct has a `v` schema version; new fields get defaults;
a field's type never changes; readers ignore unknown fields; a breaking change gets a new subject.
One message type per subject, decoded with its concrete type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from launchdeck.contracts.statuses import BuildStatus, DeploymentStatus, Environment

LogStream = Literal["stdout", "stderr", "system"]
AppKind = Literal["static", "process"]


class Message(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every message: `v` is the schema version of that message type."""

    v: int = 1


class BuildConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Per-project build overrides (all optional; detection fills the gaps)."""

    root_dir: str | None = None
    install_command: str | None = None
    build_command: str | None = None
    output_dir: str | None = None
    start_command: str | None = None
    health_path: str | None = None
    timeout_s: int | None = None


class Artifact(msgspec.Struct, kw_only=True, frozen=True):
    """A packaged release in the `artifacts` object store."""

    key: str
    sha256: str
    size: int
    kind: AppKind = "static"
    start_command: str | None = None
    health_path: str | None = None


# --- commands ---------------------------------------------------------------------------------


class BuildRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.build`: build one ref of a project. Idempotent per `build_id`."""

    build_id: str
    project_id: str
    project_name: str
    number: int
    repo_url: str
    ref: str
    config: BuildConfig = BuildConfig()
    requested_at: datetime | None = None
    # The trust level of the build: production builds (the project's branch) and preview
    # builds (any other ref, maybe an untrusted contributor's) never share a dependency cache.
    # Absent (a command from before the field) counts as preview, the untrusted side.
    environment: Environment = "preview"


class DeployRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.deploy`: make `build_id`'s release the one `environment` serves."""

    deployment_id: str
    project_id: str
    project_name: str
    build_id: str
    environment: Environment
    artifact: Artifact
    domains: list[str] = []
    requested_at: datetime | None = None


class UndeployRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.undeploy`: the project was deleted; stop serving it and remove its releases.
    Deploy commands of `project_id` that arrive later are refused."""

    project_id: str
    project_name: str
    requested_at: datetime | None = None


# --- events -----------------------------------------------------------------------------------


class BuildStatusChanged(Message, kw_only=True, frozen=True):
    """`ld.events.build.<project>.<build>`: a build moved to `status` (and `step`)."""

    build_id: str
    project_id: str
    status: BuildStatus
    step: str | None = None
    attempt: int = 1
    error: str | None = None
    commit_sha: str | None = None
    commit_message: str | None = None
    artifact: Artifact | None = None
    at: datetime


class DeploymentStatusChanged(Message, kw_only=True, frozen=True):
    """`ld.events.deployment.<project>.<deployment>`: a deployment moved to `status`."""

    deployment_id: str
    project_id: str
    build_id: str
    environment: Environment
    status: DeploymentStatus
    url: str | None = None
    error: str | None = None
    at: datetime


# --- logs -------------------------------------------------------------------------------------


class LogLine(msgspec.Struct, kw_only=True, frozen=True):
    """One line of a build log. `seq` is per build, starts at 1, never repeats or skips."""

    seq: int
    ts: datetime
    stream: LogStream
    line: str


class LogBatch(Message, kw_only=True, frozen=True):
    """`ld.logs.build.<build>`: consecutive lines of one build; `eof` marks the log's end.

    The batch with `eof=True` carries the build's final `status` and no further batch follows.
    """

    build_id: str
    attempt: int = 1
    lines: list[LogLine] = []
    eof: bool = False
    status: BuildStatus | None = None
