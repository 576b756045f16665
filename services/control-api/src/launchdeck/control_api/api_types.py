"""Request bodies and responses of the HTTP API, as msgspec Structs.

These types validate every request (constraints live here, in `Meta`) and define every response;
the OpenAPI document will be generated from the same types. Request types forbid unknown fields,
so a typo (`"deplyo": false`) is a 422 rather than silently ignored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from launchdeck.contracts.messages import AppKind, BuildStatus, DeploymentStatus, Environment
from launchdeck.control_api.models import Build, Deployment, Project

T = TypeVar("T")

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ProjectName = Annotated[str, Meta(pattern=SLUG_PATTERN, description="slug, unique")]
RepoUrl = Annotated[str, Meta(min_length=1, max_length=2048)]
# Branch, tag or sha: no whitespace, none of the characters git forbids in ref names, and
# nothing git could read as an option or a range (the build-worker refuses those too).
GitRef = Annotated[
    str, Meta(min_length=1, max_length=255, pattern=r"^(?!-)(?!.*\.\.)[^\s~^:?*\[\\]+$")
]
Hostname = Annotated[
    str,
    Meta(
        max_length=253,
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
        description="lowercase host name",
    ),
]
# A directory inside the repository: relative, no `..` component.
RelativePath = Annotated[
    str, Meta(min_length=1, max_length=1024, pattern=r"^(?!/)(?!(.*/)?\.\.(/|$)).+$")
]
Command = Annotated[str, Meta(min_length=1, max_length=4096)]
UrlPath = Annotated[str, Meta(max_length=1024, pattern=r"^/\S*$")]
TimeoutSeconds = Annotated[int, Meta(ge=1, le=24 * 3600)]


class BuildSettings(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Per-project build overrides; detection fills whatever is left out."""

    root_dir: RelativePath | None = None
    install_command: Command | None = None
    build_command: Command | None = None
    output_dir: RelativePath | None = None
    start_command: Command | None = None
    health_path: UrlPath | None = None
    timeout_s: TimeoutSeconds | None = None


# --- requests ---------------------------------------------------------------------------------


class ProjectCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: ProjectName
    repo_url: RepoUrl
    branch: GitRef = "main"
    build: BuildSettings = BuildSettings()
    domains: Annotated[list[Hostname], Meta(max_length=100)] = []


class ProjectUpdate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """PATCH: only the fields present change. `build` replaces the overrides as a whole."""

    name: ProjectName | UnsetType = UNSET
    repo_url: RepoUrl | UnsetType = UNSET
    branch: GitRef | UnsetType = UNSET
    build: BuildSettings | UnsetType = UNSET
    domains: Annotated[list[Hostname], Meta(max_length=100)] | UnsetType = UNSET


class BuildCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ref: GitRef | None = None
    deploy: bool = True
    environment: Environment | None = None


class DeploymentCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    build_id: uuid.UUID
    environment: Environment = "production"


# --- responses --------------------------------------------------------------------------------


class ProjectOut(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    name: str
    repo_url: str
    branch: str
    build: BuildSettings
    domains: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=project.id,
            name=project.name,
            repo_url=project.repo_url,
            branch=project.branch,
            build=msgspec.convert(project.build_config, BuildSettings),
            domains=project.domains,
            created_at=project.created_at,
            updated_at=project.updated_at,
        )


class ProjectCreated(ProjectOut, kw_only=True, frozen=True):
    """The creation response: the only place the webhook secret is ever shown."""

    webhook_secret: str

    @classmethod
    def of(cls, project: Project) -> ProjectCreated:
        shown = msgspec.structs.asdict(ProjectOut.of(project))
        return cls(**shown, webhook_secret=project.webhook_secret)


class ArtifactOut(msgspec.Struct, kw_only=True, frozen=True):
    key: str
    sha256: str
    size: int
    kind: AppKind


class BuildOut(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    project_id: uuid.UUID
    number: int
    ref: str
    commit_sha: str | None
    commit_message: str | None
    status: BuildStatus
    step: str | None
    attempt: int
    error: str | None
    trigger: str
    deploy: bool
    environment: Environment
    artifact: ArtifactOut | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deployment_id: uuid.UUID | None

    @classmethod
    def of(cls, build: Build) -> BuildOut:
        # Fields match by name; `artifact` is the record's property (None when not built).
        return msgspec.convert(build, cls, from_attributes=True)


class DeploymentOut(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    project_id: uuid.UUID
    build_id: uuid.UUID
    environment: Environment
    status: DeploymentStatus
    url: str | None
    error: str | None
    trigger: str
    previous_deployment_id: uuid.UUID | None
    created_at: datetime
    activated_at: datetime | None

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentOut:
        return msgspec.convert(deployment, cls, from_attributes=True)


class Page(msgspec.Struct, Generic[T], kw_only=True, frozen=True):
    """One page of a list; pass `next_cursor` back as `?cursor=` for the next (null: the end)."""

    items: list[T]
    next_cursor: str | None
