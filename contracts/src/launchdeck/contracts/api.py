"""Request bodies and responses of the HTTP API (`/api/v1`), as msgspec Structs.

The control-api validates every request with these types (constraints live here, in `Meta`) and
encodes every response with them; the CLI decodes the responses with the very same types, so the
two cannot drift apart, and the OpenAPI document will be generated from them. Request types forbid
unknown fields, so a typo (`"deplyo": false`) is a 422 rather than silently ignored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from launchdeck.contracts.messages import AppInstance, AppKind, EnvTarget, LogStream
from launchdeck.contracts.statuses import (
    BuildStatus,
    DeploymentStatus,
    Environment,
    GenerationItemStatus,
    GenerationStatus,
    RunStatus,
)

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
# An env var's name as the API accepts it (`{KEY}` of `/env/{KEY}`): what a shell can export.
ENV_KEY_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
ENV_KEY_MAX_LENGTH = 256
EnvVarName = Annotated[str, Meta(max_length=ENV_KEY_MAX_LENGTH, pattern=ENV_KEY_PATTERN)]


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
    # Container apps (BuildConfig says more): the Dockerfile, and which `build` env vars are
    # also build arguments.
    dockerfile: RelativePath | None = None
    build_args: Annotated[list[EnvVarName], Meta(max_length=100)] | None = None


class ProjectResources(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What a project's app may take when it runs as a container (`messages.AppResources`):
    memory in MiB, CPUs (fractions allowed); left out: the deploy-engine's defaults."""

    memory_mb: Annotated[int, Meta(ge=16, le=1024 * 1024)] | None = None
    cpus: Annotated[float, Meta(gt=0, le=1024)] | None = None


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
    # Whether a tag pushed to the repository builds (webhooks; a preview build of its commit).
    build_tags: bool = False
    resources: ProjectResources = ProjectResources()


class ProjectUpdate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """PATCH: only the fields present change. `build` replaces the overrides as a whole."""

    name: ProjectName | UnsetType = UNSET
    repo_url: RepoUrl | UnsetType = UNSET
    branch: GitRef | UnsetType = UNSET
    build: BuildSettings | UnsetType = UNSET
    domains: Annotated[list[Hostname], Meta(max_length=100)] | UnsetType = UNSET
    build_tags: bool | UnsetType = UNSET
    resources: ProjectResources | UnsetType = UNSET  # replaced as a whole


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
    build_tags: bool = False  # a pushed tag builds (webhooks)
    resources: ProjectResources = ProjectResources()  # a container app's limits


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


class ProjectApps(msgspec.Struct, kw_only=True, frozen=True):
    """`GET /api/v1/projects/{id}/apps`: the project's running app instances, as the
    deploy-engine reports them now (production first, then previews)."""

    project_id: uuid.UUID
    instances: list[AppInstance]


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


# --- API tokens and the audit log ---------------------------------------------------------------

TOKEN_SCOPES = ("read", "deploy", "write")
TokenScope = Literal["admin", "read", "deploy", "write"]
# The longest lifetime a token may be given (about five years); none at all means no expiry.
TOKEN_MAX_EXPIRES_IN_S = 5 * 365 * 24 * 3600
TokenName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]


class TokenCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`POST /api/v1/tokens` (admin): `scopes` is `["admin"]`, or some of `read`, `deploy`,
    `write` on one project (`project_id`: its id or name; required unless admin, refused with
    admin). `expires_in`: seconds from now (none: the token does not expire)."""

    name: TokenName
    scopes: Annotated[list[TokenScope], Meta(min_length=1, max_length=3)]
    project_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    expires_in: Annotated[int, Meta(ge=1, le=TOKEN_MAX_EXPIRES_IN_S)] | None = None


class TokenOut(msgspec.Struct, kw_only=True, frozen=True):
    """A token as listed: never its value."""

    id: uuid.UUID
    name: str
    scopes: list[str]
    project_id: uuid.UUID | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(msgspec.Struct, kw_only=True, frozen=True):
    """`POST /api/v1/tokens` → 201: the only response that shows the token's value."""

    id: uuid.UUID
    token: str
    name: str
    scopes: list[str]
    project_id: uuid.UUID | None
    expires_at: datetime | None
    created_at: datetime


class AuditEntryOut(msgspec.Struct, kw_only=True, frozen=True):
    """One audit log entry: who (token id and name; `webhook:<host>` for git pushes) did
    `action` (`project.update`, `build.create`, `token.revoke`, …) to `target`, when."""

    id: uuid.UUID
    at: datetime
    token_id: uuid.UUID | None
    token_name: str
    action: str
    project_id: uuid.UUID | None
    target: str | None
    detail: dict[str, Any]  # `Any`, not `object`: msgspec has a JSON Schema for it (OpenAPI)
    request_id: str | None


# --- schedules --------------------------------------------------------------------------------
# A schedule's action is a tagged union on "type": adding one (as `generation` was, with the
# generator) is one more Struct with its own tag, added to `ScheduleAction`; clients that do
# not know a tag get a 422 naming `action.type`, never a silently different action.

ScheduleName = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_CONTROL)]
# Five fields (minute hour day-of-month month day-of-week), as croniter reads them; the control-api
# checks the fields.
CronExpression = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL, examples=["*/5 * * * *"])
]
# An IANA time zone name (`Europe/Paris`); the control-api checks it exists.
TimeZoneName = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=NO_CONTROL, examples=["Europe/Paris"])
]
HttpTimeoutSeconds = Annotated[int, Meta(ge=1, le=300)]
ScheduleOutcomeStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "skipped"]


class BuildAction(
    msgspec.Struct,
    tag="build",
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
):
    """Build `ref` (default: the project branch) and deploy it, as `POST …/builds` would."""

    ref: GitRef | None = None
    deploy: bool = True
    environment: Environment | None = None


class CommandAction(
    msgspec.Struct,
    tag="command",
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
):
    """Run `command` once in the project's live production release (a run, with its log).
    One run at a time per schedule unless `allow_overlap`: a tick that comes while the previous
    run is still queued or running is skipped."""

    command: Command
    timeout_s: TimeoutSeconds = 600
    allow_overlap: bool = False


class HttpAction(
    msgspec.Struct,
    tag="http",
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
):
    """Call `path` of the project's live production app through the edge; a 2xx answer
    within `timeout_s` succeeds."""

    path: UrlPath
    method: Literal["GET", "POST"] = "POST"
    timeout_s: HttpTimeoutSeconds = 30


class GenerationAction(
    msgspec.Struct,
    tag="generation",
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
):
    """Start a generation job of the project from `spec`, as `POST …/generations` takes it as
    JSON (its items as `variables` or inline `rows`: a schedule keeps no uploaded file). The
    template is resolved at each tick (its latest version unless `spec.template_version`). One
    job at a time per schedule unless `allow_overlap`: a tick that comes while the schedule's
    previous job is still queued or running is skipped."""

    spec: GenerationCreate
    allow_overlap: bool = False


ScheduleAction = BuildAction | CommandAction | HttpAction | GenerationAction


class ScheduleCreate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`POST /api/v1/projects/{id}/schedules`."""

    name: ScheduleName
    cron: CronExpression
    action: ScheduleAction
    timezone: TimeZoneName = "UTC"
    enabled: bool = True


class ScheduleUpdate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`PATCH /api/v1/schedules/{id}`: only the fields present change; `action` is replaced
    as a whole. A change of `cron`, `timezone` or `enabled` computes the next tick from now."""

    name: ScheduleName | UnsetType = UNSET
    cron: CronExpression | UnsetType = UNSET
    timezone: TimeZoneName | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    action: ScheduleAction | UnsetType = UNSET


class ScheduleOutcome(msgspec.Struct, kw_only=True, frozen=True):
    """What the last fired tick did. `status` follows its build, run or generation job to the
    end (`queued`, `running`, then `succeeded`, `failed` or `cancelled`; a generation job
    stopped by its budget is `failed`); `skipped` when it was not fired; `missed_ticks`:
    earlier ticks that were due too (an outage) and were made once with it."""

    status: ScheduleOutcomeStatus
    detail: str | None
    tick_at: datetime
    fired_at: datetime
    missed_ticks: int = 0
    build_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    generation_id: uuid.UUID | None = None


class ScheduleOut(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    cron: str
    timezone: str
    enabled: bool
    action: ScheduleAction
    next_run_at: datetime | None  # null while disabled
    last_run_at: datetime | None
    last_outcome: ScheduleOutcome | None
    created_at: datetime
    updated_at: datetime


# --- runs -------------------------------------------------------------------------------------


class RunCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`POST /api/v1/projects/{id}/runs`: run `command` (a shell line, as in a Procfile) once in
    the project's live production release, for at most `timeout_s` seconds."""

    command: Command
    timeout_s: TimeoutSeconds = 600


class RunOut(msgspec.Struct, kw_only=True, frozen=True):
    """A run: `queued`, `running` (in release `build_id` of deployment `deployment_id`), then
    `succeeded` (exit code 0), `failed` (`error` says why: `exited with code 3`, `timed out after
    60 s`, `no live release of … to run in`) or `cancelled` (on request). `schedule_id`: the
    schedule that started it, null when started by hand."""

    id: uuid.UUID
    project_id: uuid.UUID
    schedule_id: uuid.UUID | None
    command: str
    status: RunStatus
    exit_code: int | None
    error: str | None
    timeout_s: int
    deployment_id: uuid.UUID | None
    build_id: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # When a cancel was asked for (`POST /api/v1/runs/{id}/cancel`): a running run ends
    # `cancelled` once the deploy-engine has stopped it.
    cancel_requested_at: datetime | None = None


class RunLogRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One line of `GET /api/v1/runs/{id}/logs` as NDJSON."""

    run_id: str
    seq: int
    ts: datetime
    stream: LogStream
    line: str


# --- prompt templates (`/api/v1/templates`) ---

# The same bounds as `launchdeck.libs.prompts` (tests/libs/test_prompts.py checks they agree).
TEMPLATE_MAX_STEPS = 20
PROMPT_MAX_CHARS = 64 * 1024
# A step's name is how later steps refer to its output (`{{ steps.outline.output }}`): an
# identifier, so Jinja's dotted access reaches it.
STEP_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
TemplateName = Annotated[
    str, Meta(pattern=printable(SLUG_PATTERN), description="slug, unique; a template's id too")
]
StepName = Annotated[
    str, Meta(pattern=STEP_NAME_PATTERN, description="an identifier, unique in the template")
]
# A prompt is text over several lines: only NUL (which PostgreSQL refuses) is kept out.
PromptText = Annotated[str, Meta(min_length=1, max_length=PROMPT_MAX_CHARS, pattern=r"^[^\x00]*$")]
StepOutput = Literal["text", "json"]


class TemplateStep(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One step: a Jinja2 prompt (sandboxed; undefined variables are errors) that sees the
    item's variables and `steps.<earlier step>.output`; the model's answer is `text`, or `json`
    valid against `schema` (a JSON Schema, Draft 2020-12, required for `json` and refused for
    `text`)."""

    name: StepName
    prompt: PromptText
    output: StepOutput = "text"
    schema: dict[str, Any] | None = None


TemplateSteps = Annotated[list[TemplateStep], Meta(min_length=1, max_length=TEMPLATE_MAX_STEPS)]


class TemplateCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`POST /api/v1/templates`: version 1 of a new template."""

    name: TemplateName
    steps: TemplateSteps


class TemplateUpdate(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`PUT /api/v1/templates/{id}`: the next version (versions never change). `name` may be
    sent (the create body as is) but must be the template's own."""

    steps: TemplateSteps
    name: TemplateName | UnsetType = UNSET


class TemplateOut(msgspec.Struct, kw_only=True, frozen=True):
    """A template at one version (the latest unless asked otherwise); `versions`: every version
    number it has, oldest first; `created_at`/`created_by`: of this version (the token's name)."""

    id: uuid.UUID
    name: str
    version: int
    steps: list[TemplateStep]
    versions: list[int]
    created_at: datetime
    created_by: str | None


class TemplateRender(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """`POST /api/v1/templates/{id}/render`: a dry run with one item's `variables` (the latest
    version unless `version` is given). No model is called: an earlier step's output is a
    placeholder (for `json`, a value of its schema's shape)."""

    variables: dict[str, Any] = {}
    version: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None


class RenderedStepOut(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    output: StepOutput
    prompt: str


class TemplateRendered(msgspec.Struct, kw_only=True, frozen=True):
    template_id: uuid.UUID
    name: str
    version: int
    steps: list[RenderedStepOut]


# --- generation jobs (`/api/v1/projects/{id}/generations`, `/api/v1/generations/{id}`) ---

GENERATION_MAX_CONCURRENCY = 256
# A variable's name: a Jinja identifier (the same as `launchdeck.libs.generation.variables`).
VariableName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
ModelName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]
BaseUrl = Annotated[str, Meta(min_length=1, max_length=2048, pattern=printable(r"^https?://\S+$"))]
EnvKey = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
Money = Annotated[str, Meta(pattern=r"^\d{1,12}(\.\d{1,6})?$", description="USD, a decimal string")]
MatrixValue = str | int | float | bool


class GenerationModel(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The model a job calls. `provider`: `ollama` (native `/api/chat`; `options` go into its
    `options`, e.g. `num_ctx`) or `openai` (any OpenAI-compatible `/v1/chat/completions`:
    vLLM, llama.cpp server, OpenAI; `options` are merged into the body). `base_url`: the
    server (default: the generator's `OLLAMA_URL` / `OPENAI_BASE_URL`). `api_key_env`: the
    name of one of the project's env vars holding the API key (its production value); the key
    itself is never shown, logged or stored outside that variable."""

    provider: Literal["ollama", "openai"]
    name: ModelName
    base_url: BaseUrl | None = None
    api_key_env: EnvKey | None = None
    options: dict[str, Any] = {}


class GenerationParameters(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Sampling: a fixed `seed` (or `temperature` 0) makes calls cacheable."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None


class GenerationLimits(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Calls at once (the generator halves it while the provider answers 429/503, then grows
    it back), requests per minute, and the budget in USD and/or tokens (input + output): the
    job stops as `budget_exceeded` before a call that could overspend it."""

    concurrency: Annotated[int, Meta(ge=1, le=GENERATION_MAX_CONCURRENCY)] = 4
    requests_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    budget_usd: Money | None = None
    budget_tokens: Annotated[int, Meta(ge=1, le=2**62)] | None = None


class GenerationPrice(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens, overriding the operator's price table for this job."""

    input_per_mtok: Money
    output_per_mtok: Money


class GenerationCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`POST /api/v1/projects/{id}/generations` (JSON, or multipart with this as the `spec`
    part and a `rows` file part, `.jsonl` or `.csv`): run `template` (id or name; its latest
    version unless `template_version`, pinned at creation) over the items given either as
    `variables` (a matrix: the cross product of the lists, first key outermost) or as `rows`
    (one object per item). `group_by`: a variable whose value groups items into manifests and
    index pages. `cache`: serve identical requests from the response cache."""

    template: Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]
    model: GenerationModel
    template_version: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None
    variables: dict[VariableName, list[MatrixValue]] | None = None
    rows: list[dict[str, Any]] | None = None
    parameters: GenerationParameters = GenerationParameters()
    limits: GenerationLimits = GenerationLimits()
    group_by: VariableName | None = None
    cache: bool = True
    price: GenerationPrice | None = None


class GenerationOut(msgspec.Struct, kw_only=True, frozen=True):
    """A job and its totals. `cost_usd` is a decimal string; `cached`: items served wholly from
    the response cache (at no cost)."""

    id: uuid.UUID
    project_id: uuid.UUID
    template_id: uuid.UUID
    template_name: str
    template_version: int
    status: GenerationStatus
    model: GenerationModel
    parameters: GenerationParameters
    limits: GenerationLimits
    group_by: str | None
    cache: bool
    total: int
    done: int
    failed: int
    pending: int
    cached: int
    tokens_in: int
    tokens_out: int
    cost_usd: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str | None = None


class GenerationItemOut(msgspec.Struct, kw_only=True, frozen=True):
    """One item: its variables, and once called its outputs (step name → text, or the value of
    a `json` step) or error."""

    index: int
    status: GenerationItemStatus
    variables: dict[str, Any]
    group: str | None
    outputs: dict[str, Any]
    error: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: str
    cached: bool
    attempts: int
    finished_at: datetime | None


class GenerationPromptOut(msgspec.Struct, kw_only=True, frozen=True):
    """The rendered prompts of one item in a dry run (later steps see placeholders for the
    outputs of earlier ones)."""

    index: int
    variables: dict[str, Any]
    steps: list[RenderedStepOut]


class GenerationEstimate(msgspec.Struct, kw_only=True, frozen=True):
    """`POST /api/v1/projects/{id}/generations/dry-run` (the body of a create; `?prompts=N`,
    default 3): the first N items' prompts, and an estimate over every item — calls, tokens in
    (an overestimate of the rendered prompts), tokens out (`max_tokens` per call, or 1,024) and
    the cost at the job's price. No model is called and nothing is stored."""

    items: int
    calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: str
    prompts: list[GenerationPromptOut]


class GenerationPublish(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`POST /api/v1/generations/{id}/publish`: render the done items as a static site and
    deploy it to `project` (id or name; the job's own project when left out) through the
    normal artifact → deploy path. `step`: whose output is each page's Markdown (default: the
    template's last step)."""

    project: Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL)] | None = None
    step: StepName | None = None
    environment: Environment = "production"


class GenerationPublished(msgspec.Struct, kw_only=True, frozen=True):
    """The build holding the rendered site (status `succeeded`, source `generation`) and the
    deployment that serves it (follow it like any deployment)."""

    job_id: uuid.UUID
    project_id: uuid.UUID
    build_id: uuid.UUID
    deployment_id: uuid.UUID
    pages: int


class GenerationTimelineBucket(msgspec.Struct, kw_only=True, frozen=True):
    """The items that finished in one time bucket, `[at, at + bucket_s)`: how many, their rate
    (`done` + `failed` per second of the bucket), their tokens and cost (a decimal string)."""

    at: datetime
    done: int
    failed: int
    items_per_s: float
    tokens_in: int
    tokens_out: int
    cost_usd: str


class GenerationTimeline(msgspec.Struct, kw_only=True, frozen=True):
    """`GET /api/v1/generations/{id}/timeline[?bucket_s=N]`: a job's progress over time, from
    its items' finish times, for charts. `start`: when the job started (else was created);
    `end`: when it finished (else now). Every bucket from `start` to `end` is listed, empty
    ones too; `bucket_s` is chosen so there are at most 120 unless asked for."""

    job_id: uuid.UUID
    start: datetime
    end: datetime
    bucket_s: int
    buckets: list[GenerationTimelineBucket]


class GenerationCostDay(msgspec.Struct, kw_only=True, frozen=True):
    """One UTC day of a project's generation: items finished that day, across its jobs, with
    their tokens and cost (a decimal string)."""

    day: str  # YYYY-MM-DD
    jobs: int
    items: int
    tokens_in: int
    tokens_out: int
    cost_usd: str


class GenerationCosts(msgspec.Struct, kw_only=True, frozen=True):
    """`GET /api/v1/projects/{id}/generations/costs?days=N` (default 30): every day of the last
    N (UTC, today included, oldest first, empty days too) and the total."""

    project_id: uuid.UUID
    days: list[GenerationCostDay]
    total_usd: str
