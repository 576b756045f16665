"""Every message that crosses NATS, as msgspec Structs (JSON on the wire).

Rules (see docs/contracts.md): each Struct has a `v` schema version; new fields get defaults;
a field's type never changes; readers ignore unknown fields; a breaking change gets a new subject.
One message type per subject, decoded with its concrete type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from launchdeck.contracts.statuses import (
    BuildStatus,
    DeploymentStatus,
    Environment,
    GenerationStatus,
    RunStatus,
)

LogStream = Literal["stdout", "stderr", "system"]
# static: files served by the edge; process: commands run from the release (Procfile, npm start…);
# container: an image built from the repository's Dockerfile, run by a container engine.
AppKind = Literal["static", "process", "container"]


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
    # A container app (`Dockerfile` at root_dir): the Dockerfile's path relative to root_dir, and
    # the names of the project's `build` env vars given to it as build arguments (`--build-arg`,
    # visible in the image's history: for values that are not secret). Every `build` var is
    # also mounted as a build secret (`RUN --mount=type=secret,id=NAME`), never baked in.
    dockerfile: str | None = None
    build_args: list[str] | None = None


class AppResources(msgspec.Struct, kw_only=True, frozen=True):
    """A project's share of the machine when its app runs as a container: a memory limit in MiB
    (the container is OOM-killed past it) and CPUs (fractions allowed). None: the engine's
    default (`LAUNCHDECK_CONTAINER_MEMORY_MB`, `LAUNCHDECK_CONTAINER_CPUS`)."""

    memory_mb: int | None = None
    cpus: float | None = None


class ContainerImage(msgspec.Struct, kw_only=True, frozen=True):
    """The image of a container release: `archive` is its OCI archive inside the release
    (relative path; `podman load` reads it), `id` the image id the build made (sha256:…),
    `ports` what its Dockerfile EXPOSEs (informational: the app must listen on `$PORT`),
    `command` its entrypoint + command, for people."""

    archive: str
    id: str
    ports: list[int] = []
    command: list[str] = []


class Artifact(msgspec.Struct, kw_only=True, frozen=True):
    """A packaged release in the `artifacts` object store.

    For a process release, `processes` maps each process type to its command (`web` is the one
    that gets `PORT`, a route and a health check; any other type, e.g. `worker`, runs supervised
    without them); `start_command` is the `web` command (kept for readers of version 1). The
    release also carries the same facts as `RELEASE_MANIFEST` (a `ReleaseManifest`) at its root.
    """

    key: str
    sha256: str
    size: int
    kind: AppKind = "static"
    start_command: str | None = None
    health_path: str | None = None
    processes: dict[str, str] = {}
    release_command: str | None = None


# The manifest a build puts at the root of every process release, so the deploy-engine never
# guesses. A static release carries none: its root is served as it is, and a file there would be
# public (a release without this file is static, as every release was before it existed).
RELEASE_MANIFEST = ".launchdeck/release.json"


class ReleaseManifest(Message, kw_only=True, frozen=True):
    """`.launchdeck/release.json` in a process release: what it is and how it runs.

    `processes`: process type → command line, as in a Procfile: run by `sh -c` with the release
    as working directory, so `$PORT` and the app's other variables expand (`web` gets `PORT`, a
    route and a health check; an app may have no `web` at all: a worker only).
    `release_command` runs the same way once per deployment in the new release before activation
    (its failure fails the deployment).
    `env`: defaults every process and the release command get (`NODE_ENV=production`,
    `PYTHONUNBUFFERED=1`); the project's own variables win over them.
    `paths`: search-path variable → directories inside the release (relative) to put in front of
    it, made absolute against wherever the release was extracted: e.g. `PATH` gets
    `node_modules/.bin`, or `.launchdeck/bin` (the `python` shim) and the Python dependencies'
    scripts, and `PYTHONPATH` the dependencies (`.launchdeck/site-packages`).
    `launchdeck.libs.launcher.release` reads it and computes a process's environment from it.
    `runtime`: the versions the build used (`{"node": "20.20.2", "python": "3.11.7"}`).
    `static_root`: unused by the build-worker (static releases carry no manifest).
    """

    kind: AppKind
    processes: dict[str, str] = {}
    release_command: str | None = None
    health_path: str = "/"
    runtime: dict[str, str] = {}
    env: dict[str, str] = {}
    paths: dict[str, list[str]] = {}
    static_root: str | None = None
    image: ContainerImage | None = None  # kind "container": the image it runs


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
    """`ld.jobs.deploy`: make `build_id`'s release the one `environment` serves.

    `commit_sha`: the commit the build was made from; an app's processes get it as
    `LAUNCHDECK_COMMIT_SHA` (absent from commands of before the field)."""

    deployment_id: str
    project_id: str
    project_name: str
    build_id: str
    environment: Environment
    artifact: Artifact
    domains: list[str] = []
    requested_at: datetime | None = None
    commit_sha: str | None = None
    resources: AppResources = AppResources()  # a container app's limits (the project's)


class UndeployRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.undeploy`: the project was deleted; stop serving it and remove its releases.
    Deploy commands of `project_id` that arrive later are refused."""

    project_id: str
    project_name: str
    requested_at: datetime | None = None


class RunRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.run`: run `command` once in the project's live production release (its
    sandbox, its production env vars), for at most `timeout_s` seconds. `Nats-Msg-Id`: the
    run id."""

    run_id: str
    project_id: str
    project_name: str
    command: str
    timeout_s: int
    requested_at: datetime | None = None


# --- events -----------------------------------------------------------------------------------


# Why a build ended as it did, where a client may act on it without parsing `error` (a plain
# string, so a reason added later never makes an older reader refuse the event):
BUILD_REASON_TIMEOUT = "timeout"  # failed: it ran past its time limit, its processes were killed
BUILD_REASON_CANCELLED = "cancelled"  # cancelled: on request (`POST /api/v1/builds/{id}/cancel`)


class BuildStatusChanged(Message, kw_only=True, frozen=True):
    """`ld.events.build.<project>.<build>`: a build moved to `status` (and `step`).

    `reason` says why a finished build ended so, when it is one of the `BUILD_REASON_*`
    (`timeout`, `cancelled`); `error` says it for people."""

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
    reason: str | None = None


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


class RunStatusChanged(Message, kw_only=True, frozen=True):
    """`ld.events.run.<project>.<run>`: a run moved to `status` (`running` once its process
    started in release `deployment_id`/`build_id`; then `succeeded`, `failed` or `cancelled`).
    `exit_code` is the process's own (None when it never started, was killed or timed out);
    `error` says why it failed, for people (`exited with code 3`, `timed out after 60 s`).
    `attempt` counts deliveries of its command, as a build's does."""

    run_id: str
    project_id: str
    status: RunStatus
    attempt: int = 1
    exit_code: int | None = None
    error: str | None = None
    deployment_id: str | None = None
    build_id: str | None = None
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


class RunLogBatch(Message, kw_only=True, frozen=True):
    """`ld.logs.run.<run>`: consecutive lines of one run (the `LogLine`s of a build log, secret
    values masked); `eof` marks the log's end and carries the run's final `status`.
    `Nats-Msg-Id`: `<run>:<attempt>:<first seq>` (`eof` for the last batch)."""

    run_id: str
    attempt: int = 1
    lines: list[LogLine] = []
    eof: bool = False
    status: RunStatus | None = None


# --- app logs ---------------------------------------------------------------------------------


class AppLogBatch(Message, kw_only=True, frozen=True):
    """`ld.logs.app.<project>`: lines of a running app's processes (all its deployments and
    process types, in the order the deploy-engine read them), secret values already masked.

    `process`: the process type (`web`, `worker`, …) or `release` (the release command). A line
    of stream `system` is the engine's own about the process (`⚠ The web process exited with
    code 1; starting it again in 1s`). `seq` of each line is per deployment and process: it
    increases and never repeats, also across engine restarts, but may skip (lines lost with an
    engine that was killed); readers order and resume by the stream's own sequence.
    `Nats-Msg-Id`: `<deployment>:<process>:<first seq>`."""

    project_id: str
    deployment_id: str
    process: str  # `web`, `worker`, … or `release` (the release command)
    lines: list[LogLine] = []


# --- request/reply (core NATS: never stored in a stream) --------------------------------------

EnvTarget = Literal["build", "preview", "production"]


class EnvRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.env`: the decrypted env vars of one project for one build or deployment.

    Asked by the build-worker (target `build`, with `build_id`) and the deploy-engine (target
    `preview` or `production`, with `deployment_id`, the deployment's environment); the
    control-api answers only for a build or deployment that exists, belongs to `project_id` and
    is not finished (a deployment: pending, activating, active or unhealthy), and only to the
    service that runs it: `build` to an inbox of the build-worker (`_INBOX.build-worker.…`),
    `preview`/`production` to one of the deploy-engine. `libs.env_client.fetch_env` asks.
    """

    project_id: str
    target: EnvTarget
    build_id: str | None = None
    deployment_id: str | None = None


class EnvReply(Message, kw_only=True, frozen=True):
    """The answer to `EnvRequest`: `vars` (name → decrypted value), or `error`, why the request
    was refused (no value for a build or deployment that is not the asker's to run)."""

    vars: dict[str, str] = {}
    error: str | None = None


class AppsReportRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.apps.report`: what the deploy-engine runs of one project now (core NATS
    request/reply; the control-api asks for `GET /api/v1/projects/{id}/apps`)."""

    project_id: str


class AppInstance(msgspec.Struct, kw_only=True, frozen=True):
    """One running instance of a project's app, as the deploy-engine sees it.

    `slot`: `production` or `preview:<build id>`; `status`: starting, serving or draining;
    `healthy`: running, ready and not in a crash loop; `uptime_s`: since its current process
    started (None when it is not running). A container app's instance also names its container,
    image (id and size in bytes: its OCI archive in the release), limits and the container's
    state as the engine reports it (`running`, `exited`…)."""

    slot: str
    environment: str
    process: str
    deployment_id: str
    build_id: str
    status: str
    running: bool
    ready: bool
    healthy: bool
    pid: int | None = None
    port: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    uptime_s: float | None = None
    container: str | None = None
    image_id: str | None = None
    image_size: int | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    container_status: str | None = None


class AppsReport(Message, kw_only=True, frozen=True):
    """The answer to `AppsReportRequest`: the project's instances (every slot), production
    first, then previews, each by process type."""

    project_id: str
    instances: list[AppInstance] = []


class BuildCancelRequested(Message, kw_only=True, frozen=True):
    """`ld.control.build.cancel`: stop this build wherever it runs (core NATS, every worker
    hears it). The same message is the value of the build's key in the `cancellations` KV
    bucket, written before it: the worker that picks the job up later drops it, and a worker
    running it that missed this message finds the mark when it next looks (every few seconds)."""

    build_id: str
    project_id: str
    requested_at: datetime | None = None


class RunCancelRequested(Message, kw_only=True, frozen=True):
    """The value of a cancelled run's key (its id) in the `cancellations` KV bucket, written by
    the control-api on `POST /api/v1/runs/{id}/cancel`: the deploy-engine drops the run if it
    has not started it, or stops it (its whole process group) within a second if it runs."""

    run_id: str
    project_id: str
    requested_at: datetime | None = None


# --- generation jobs --------------------------------------------------------------------------
# Money crosses the wire as decimal strings ("0.00125"), never a float (libs.generation.pricing).


class GenerationRequested(Message, kw_only=True, frozen=True):
    """`ld.jobs.generate`: run generation job `job_id` (its definition is in the control-api:
    the generator asks for it with `ld.rpc.generation.start`). Redelivered after a generator
    died: the job resumes from its items' checkpoint. `Nats-Msg-Id`: the job id."""

    job_id: str
    project_id: str
    requested_at: datetime | None = None


class GenerationCancelRequested(Message, kw_only=True, frozen=True):
    """`ld.control.generation.cancel` (core NATS, every generator hears it): the job was
    cancelled (its row already says so); the generator running it starts no new call."""

    job_id: str
    requested_at: datetime | None = None


class GenerationStepSpec(msgspec.Struct, kw_only=True, frozen=True):
    """One step of the job's pinned template version."""

    name: str
    prompt: str
    output: Literal["text", "json"] = "text"
    schema: dict[str, Any] | None = None


class GenerationJobSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the generator needs to run a job, and where the job stands (its totals so
    far: a resumed job starts from them)."""

    job_id: str
    project_id: str
    status: GenerationStatus
    template_name: str
    template_version: int
    steps: list[GenerationStepSpec]
    provider: Literal["ollama", "openai"]
    model: str
    base_url: str | None = None  # None: the generator's default for the provider
    options: dict[str, Any] = {}
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    concurrency: int = 4
    requests_per_minute: int | None = None
    budget_usd: str | None = None
    budget_tokens: int | None = None
    price_input_per_mtok: str = "0"
    price_output_per_mtok: str = "0"
    cache: bool = True
    total: int = 0
    done: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: str = "0"


class GenerationStartRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.generation.start`: the generator took job `job_id` (delivery `attempt`); a
    queued job becomes `running`."""

    job_id: str
    attempt: int = 1


class GenerationStartReply(Message, kw_only=True, frozen=True):
    """The job (None with `error` when it does not exist). A finished job comes back with its
    final status: the generator drops its command. `api_key`: the value of the job's
    `api_key_env` project variable (request/reply only: never stored in a stream, never logged)."""

    job: GenerationJobSpec | None = None
    api_key: str | None = None
    error: str | None = None


class GenerationClaimRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.generation.claim`: up to `limit` pending items with an index above
    `after_index`, in index order (-1: from the start)."""

    job_id: str
    after_index: int = -1
    limit: int = 256


class GenerationWorkItem(msgspec.Struct, kw_only=True, frozen=True):
    index: int
    variables: dict[str, Any]


class GenerationClaimReply(Message, kw_only=True, frozen=True):
    """Pending items (none left: `items` empty), and the job's status now (`cancelled`: stop)."""

    items: list[GenerationWorkItem] = []
    status: GenerationStatus | None = None
    error: str | None = None


class GenerationCall(msgspec.Struct, kw_only=True, frozen=True):
    """One model call of an item (a step), as the response cache stores it: `fingerprint` is
    its key (None: not cacheable), `cached` when the answer came from the cache (no call made)."""

    step: str
    fingerprint: str | None = None
    content: str
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False


class GenerationItemResult(msgspec.Struct, kw_only=True, frozen=True):
    """What became of one item: `done` with `outputs` (step name → text, or the parsed value of
    a `json` step), or `failed` with `error`. Tokens and cost are the item's calls' sums (0
    for cached calls); `cached` when every step came from the cache; `attempts`: calls made
    for it, retries included."""

    index: int
    status: Literal["done", "failed"]
    outputs: dict[str, Any] = {}
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: str = "0"
    cached: bool = False
    attempts: int = 0
    calls: list[GenerationCall] = []


class GenerationSettleRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.generation.settle`: store these results (idempotent: an item already finished
    keeps its first result) and add them to the job's totals; answers cacheable calls are
    stored in the response cache."""

    job_id: str
    results: list[GenerationItemResult]


class GenerationTotals(msgspec.Struct, kw_only=True, frozen=True):
    """A job's status and totals, as stored."""

    status: GenerationStatus
    total: int = 0
    done: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: str = "0"
    error: str | None = None


class GenerationSettleReply(Message, kw_only=True, frozen=True):
    totals: GenerationTotals | None = None
    error: str | None = None


class GenerationCacheRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.generation.cache`: which of these fingerprints have a stored answer."""

    fingerprints: list[str]


class CachedAnswer(msgspec.Struct, kw_only=True, frozen=True):
    content: str
    tokens_in: int = 0
    tokens_out: int = 0


class GenerationCacheReply(Message, kw_only=True, frozen=True):
    hits: dict[str, CachedAnswer] = {}
    error: str | None = None


class GenerationFinishRequest(Message, kw_only=True, frozen=True):
    """`ld.rpc.generation.finish`: the job ended as `status` (`error`: why it failed). A job
    already finished (cancelled meanwhile) keeps its status."""

    job_id: str
    status: GenerationStatus
    error: str | None = None


class GenerationFinishReply(Message, kw_only=True, frozen=True):
    totals: GenerationTotals | None = None
    error: str | None = None


class GenerationProgress(Message, kw_only=True, frozen=True):
    """`ld.events.generation.<job>`: where a job stands, published by the generator at most a
    few times a second while it runs and once when it ends (then `status` is final); also
    sent first to a `generation:<id>` WebSocket subscriber. `items_per_s` over the last 30 s;
    `eta_s` None while no rate is known."""

    job_id: str
    project_id: str
    status: GenerationStatus
    total: int
    done: int
    failed: int
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: str = "0"
    items_per_s: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    at: datetime
