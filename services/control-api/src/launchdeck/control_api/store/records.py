"""The control-api's records as stored in Postgres (one row → one frozen Struct).

Storage modules return these; `api.present` decides what of them the HTTP API shows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, TypeVar, cast, get_args

import msgspec

from launchdeck.contracts.messages import AppKind, AppResources, Artifact, BuildConfig
from launchdeck.contracts.statuses import BuildStatus, DeploymentStatus, Environment, RunStatus

# What triggered a build (later also webhook, schedule, generation) and a deployment:
# its build's success (auto-deploy), `POST …/deployments`, `POST …/rollback` or
# `POST …/redeploy`.
BuildTrigger = str
DeploymentTrigger = Literal["build", "api", "rollback", "redeploy"]


class Project(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    name: str
    repo_url: str
    branch: str
    build_config: dict[str, Any]
    domains: list[str]
    created_at: datetime
    updated_at: datetime
    # Whether a pushed tag builds (webhooks). The webhook secret is not part of the record: it
    # is read, sealed, only where a delivery is verified (`store.webhook_secrets`).
    build_tags: bool = False
    # What its app may take as a container (the API's ProjectResources as JSON; {}: defaults).
    resources: dict[str, Any] = {}

    @property
    def config(self) -> BuildConfig:
        return msgspec.convert(self.build_config, BuildConfig)

    @property
    def app_resources(self) -> AppResources:
        return msgspec.convert(self.resources, AppResources)


class Build(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    project_id: uuid.UUID
    number: int
    ref: str
    commit_sha: str | None
    commit_message: str | None
    trigger: BuildTrigger
    status: BuildStatus
    step: str | None
    error: str | None
    attempt: int
    deploy: bool
    environment: Environment
    artifact_key: str | None
    artifact_sha256: str | None
    artifact_size: int | None
    artifact_kind: str | None
    start_command: str | None
    health_path: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deployment_id: uuid.UUID | None
    updated_at: datetime  # its last status change (the stuck-jobs sweep measures from it)
    reason: str | None = None  # why it ended so: `timeout`, `cancelled` (messages.BUILD_REASON_*)
    cancel_requested_at: datetime | None = None  # `POST …/cancel`

    @property
    def artifact(self) -> Artifact | None:
        if self.artifact_key is None or self.artifact_sha256 is None or self.artifact_size is None:
            return None
        return Artifact(
            key=self.artifact_key,
            sha256=self.artifact_sha256,
            size=self.artifact_size,
            kind=artifact_kind(self.artifact_kind),
            start_command=self.start_command,
            health_path=self.health_path,
        )


_APP_KINDS: frozenset[str] = frozenset(get_args(AppKind))


def artifact_kind(stored: str | None) -> AppKind:
    """The kind of a stored artifact; rows from before kinds were recorded are static sites."""
    return cast(AppKind, stored) if stored in _APP_KINDS else "static"


class Deployment(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    project_id: uuid.UUID
    build_id: uuid.UUID
    environment: Environment
    status: DeploymentStatus
    url: str | None
    error: str | None
    trigger: DeploymentTrigger
    previous_deployment_id: uuid.UUID | None
    created_at: datetime
    activated_at: datetime | None
    updated_at: datetime


class EnvVar(msgspec.Struct, kw_only=True, frozen=True):
    """One env var as stored: its value only sealed (`domain.sealing`), never in plaintext."""

    project_id: uuid.UUID
    key: str
    targets: list[str]
    nonce: bytes
    ciphertext: bytes
    key_id: str
    created_at: datetime
    updated_at: datetime


class Run(msgspec.Struct, kw_only=True, frozen=True):
    """One run of a command in a project's live release (`schedule_id`: the schedule that
    asked for it, None when started by hand; `deployment_id`/`build_id`: the release it ran
    in, None until it started)."""

    id: uuid.UUID
    project_id: uuid.UUID
    schedule_id: uuid.UUID | None
    deployment_id: uuid.UUID | None
    build_id: uuid.UUID | None
    command: str
    status: RunStatus
    attempt: int
    exit_code: int | None
    error: str | None
    timeout_s: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    cancel_requested_at: datetime | None = None  # `POST …/cancel` of a running run


class Schedule(msgspec.Struct, kw_only=True, frozen=True):
    """A cron schedule of a project; `action` is the API's `ScheduleAction` as JSON (tagged by
    `type`); `next_run_at` is None while disabled."""

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    cron: str
    timezone: str
    enabled: bool
    action: dict[str, Any]
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleTick(msgspec.Struct, kw_only=True, frozen=True):
    """One fired (or skipped) tick of a schedule, with the status of the build, run or
    generation job it made (`build_status`/`run_status`/`generation_status`, read with it:
    None when it made none)."""

    schedule_id: uuid.UUID
    tick_at: datetime
    fired_at: datetime
    outcome: str
    missed_ticks: int
    build_id: uuid.UUID | None
    run_id: uuid.UUID | None
    generation_id: uuid.UUID | None
    detail: str | None
    deadline_at: datetime | None
    settled_at: datetime | None
    build_status: str | None = None
    build_error: str | None = None
    run_status: str | None = None
    run_error: str | None = None
    generation_status: str | None = None
    generation_error: str | None = None


S = TypeVar("S", bound=msgspec.Struct)


def from_record(type_: type[S], record: Any) -> S:
    """Build a Struct from an asyncpg Record (columns matched by name)."""
    return type_(**{name: record[name] for name in type_.__struct_fields__})
