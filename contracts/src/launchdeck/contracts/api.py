"""Request bodies and responses of the HTTP API (`/api/v1`), as msgspec Structs.

The control-api validates every request with these types (constraints live here, in `Meta`) and
encodes every response with them; the CLI decodes the responses with the very same types, so the
two cannot drift apart, and the OpenAPI document will be generated from them. Request types forbid
unknown fields, so a typo (`"deplyo": false`) is a 422 rather than silently ignored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from launchdeck.contracts.messages import AppKind, EnvTarget, LogStream
from launchdeck.contracts.statuses import BuildStatus, DeploymentStatus, Environment

T = TypeVar("T")

# No control character anywhere in a text field: C0 (NUL, tab, newline, …), DEL and C1.
# PostgreSQL refuses NUL in text and jsonb (that was a 500), and a newline in a name, a ref or
# a command would forge lines in logs. A lookahead anchored at the start, so it combines with a
# field's own pattern — and msgspec searches patterns, where `$` also matches before a final
# newline: with this prefix, a trailing newline cannot slip past a pattern's `$`.
NO_CONTROL = r"^(?![\s\S]*[\x00-\x1f\x7f-\x9f])"


def printable(pattern: str = "") -> str:
    """`pattern` (anchored with `^`, or empty) that also refuses control characters."""
    return NO_CONTROL + pattern.removeprefix("^")


SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ProjectName = Annotated[str, Meta(pattern=printable(SLUG_PATTERN), description="slug, unique")]
RepoUrl = Annotated[str, Meta(min_length=1, max_length=2048, pattern=NO_CONTROL)]
# Branch, tag or sha: no whitespace, none of the characters git forbids in ref names, and
# nothing git could read as an option or a range (the build-worker refuses those too).
GitRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=printable(r"^(?!-)(?!.*\.\.)[^\s~^:?*\[\\]+$"),
    ),
]
Hostname = Annotated[
    str,
    Meta(
        max_length=253,
        pattern=printable(
            r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
        ),
        description="lowercase host name",
    ),
]
# A directory inside the repository: relative, no `..` component.
RelativePath = Annotated[
    str, Meta(min_length=1, max_length=1024, pattern=printable(r"^(?!/)(?!(.*/)?\.\.(/|$)).+$"))
]
Command = Annotated[str, Meta(min_length=1, max_length=4096, pattern=NO_CONTROL)]
UrlPath = Annotated[str, Meta(max_length=1024, pattern=printable(r"^/\S*$"))]
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
# `omit_defaults`: a client (the CLI) sends only what it sets, as a person would.


class ProjectCreate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    name: ProjectName
    repo_url: RepoUrl
    branch: GitRef = "main"
    build: BuildSettings = BuildSettings()
    domains: Annotated[list[Hostname], Meta(max_length=100)] = []


class ProjectUpdate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """PATCH: only the fields present change. `build` replaces the overrides as a whole."""

    name: ProjectName | UnsetType = UNSET
    repo_url: RepoUrl | UnsetType = UNSET
    branch: GitRef | UnsetType = UNSET
    build: BuildSettings | UnsetType = UNSET
    domains: Annotated[list[Hostname], Meta(max_length=100)] | UnsetType = UNSET


class BuildCreate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    ref: GitRef | None = None
    deploy: bool = True
    environment: Environment | None = None


class DeploymentCreate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    build_id: uuid.UUID
    environment: Environment = "production"


class Redeploy(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`POST /api/v1/projects/{id}/redeploy` (the body is optional): activate the build live in
    `environment` again as a new deployment, so its app starts with the current env vars."""

    environment: Environment = "production"


# An env var's name as the API accepts it (`{KEY}` of `/env/{KEY}`): what a shell can export.
ENV_KEY_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
ENV_KEY_MAX_LENGTH = 256
# Names the platform sets itself (an app's `PORT` and `LAUNCHDECK_*` metadata, a build's
# `LAUNCHDECK_BUILD_MARKER`): a project may not set them.
ENV_RESERVED_KEYS = frozenset({"PORT"})
ENV_RESERVED_PREFIX = "LAUNCHDECK_"
ENV_TARGETS: tuple[EnvTarget, ...] = ("build", "preview", "production")
# A value is any text without NUL (the one character an environment cannot hold), up to 64 KiB.
EnvValue = Annotated[str, Meta(max_length=64 * 1024, pattern=r"^[^\x00]*$")]


class EnvVarSet(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`PUT /api/v1/projects/{id}/env/{KEY}`: set (create or replace) one env var.

    `targets`: where it is given — `build` (install and build commands), `preview` and
    `production` (running apps); every one when left out. The value is encrypted at rest and
    never shown again.
    """

    value: EnvValue
    targets: Annotated[list[EnvTarget], Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: list(ENV_TARGETS)
    )


# --- responses --------------------------------------------------------------------------------


class EnvVarOut(msgspec.Struct, kw_only=True, frozen=True):
    """An env var as the API shows it: its name and targets, never its value."""

    key: str
    targets: list[EnvTarget]
    updated_at: datetime


class ProjectOut(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    name: str
    repo_url: str
    branch: str
    build: BuildSettings
    domains: list[str]
    created_at: datetime
    updated_at: datetime


class ProjectCreated(ProjectOut, kw_only=True, frozen=True):
    """The creation response: the only place the webhook secret is ever shown."""

    webhook_secret: str


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
    # Why it ended so, for `failed` with `timeout` and `cancelled` (messages.BUILD_REASON_*).
    reason: str | None = None
    # When a cancel was asked for (`POST /api/v1/builds/{id}/cancel`): a running build ends
    # `cancelled` once its worker has stopped it.
    cancel_requested_at: datetime | None = None


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


class Page(msgspec.Struct, Generic[T], kw_only=True, frozen=True):
    """One page of a list; pass `next_cursor` back as `?cursor=` for the next (null: the end)."""

    items: list[T]
    next_cursor: str | None


class LogRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One log line as `GET /api/v1/builds/{id}/logs` shows it in NDJSON."""

    build_id: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str


class AppLogRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One line of a running app as `GET /api/v1/projects/{id}/logs` shows it in NDJSON.

    `seq` counts per deployment and process; `cursor` is the LOGS stream sequence of the batch
    the line came in (`?from_cursor=` on the WebSocket resumes there)."""

    project_id: str
    deployment_id: str
    process: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str
    cursor: int


def app_log_text(ts: datetime, process: str, deployment_id: str, line: str) -> str:
    """One app log line as text (the `text/plain` answer, `launchdeck logs --app`):
    `2026-11-22T05:13:04.123Z web[3795fee8] GET / 200` — when, which process of which
    deployment (its id's first 8 characters), what it printed."""
    when = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return f"{when} {process}[{deployment_id[:8]}] {line}"


# --- errors -----------------------------------------------------------------------------------

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemField(msgspec.Struct, frozen=True):
    """One invalid input: `field` is a path such as `build.timeout_s` or `domains[1]`."""

    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """An error response (RFC 9457 `application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemField] = []


# --- probes -----------------------------------------------------------------------------------


class Health(msgspec.Struct, kw_only=True, frozen=True):
    """`GET /health`: the process is up."""

    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct, kw_only=True, frozen=True):
    """`GET /ready`: 200 `ready` when Postgres and NATS answer, else 503 `unavailable`; each
    check is `ok` or why it failed."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
