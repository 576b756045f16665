"""The API's description, written once: `ROUTES` (one `RouteDoc` per route) → OpenAPI 3.1.

`GET /api/v1/openapi.json` serves `openapi_document()`, and `/api/docs` (`api.reference`) renders
it as HTML. Bodies and responses are the msgspec types of `launchdeck.contracts.api` — the very
types `read_json` decodes requests with and handlers encode responses with — turned into JSON
Schema (2020-12, OpenAPI 3.1's dialect) by `msgspec.json.schema_components`, so the document
cannot drift from what the code accepts. `tests/control_api/test_openapi.py` fails when the app
has a route this table lacks, or the table one the app lacks.

Both are public (no token), like the probes: the description reveals nothing a client cannot
learn by calling the API, and tools (code generators, schemathesis) read it before they hold a
token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import msgspec
from aiohttp import web

from launchdeck.contracts.api import (
    ENV_KEY_MAX_LENGTH,
    ENV_KEY_PATTERN,
    PROBLEM_CONTENT_TYPE,
    AppLogRecord,
    AuditEntryOut,
    BuildCreate,
    BuildOut,
    DeploymentCreate,
    DeploymentOut,
    EnvVarOut,
    EnvVarSet,
    GenerationCosts,
    GenerationCreate,
    GenerationEstimate,
    GenerationItemOut,
    GenerationOut,
    GenerationPublish,
    GenerationPublished,
    GenerationTimeline,
    Health,
    LogRecord,
    Page,
    Problem,
    ProjectApps,
    ProjectCreate,
    ProjectCreated,
    ProjectOut,
    ProjectUpdate,
    Readiness,
    Redeploy,
    RunCreate,
    RunLogRecord,
    RunOut,
    ScheduleCreate,
    ScheduleOut,
    ScheduleUpdate,
    TemplateCreate,
    TemplateOut,
    TemplateRender,
    TemplateRendered,
    TemplateUpdate,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from launchdeck.contracts.webhooks import HookAnswer, WebhookSecretOut
from launchdeck.contracts.ws import MAX_BATCH_LINES, ClientMessage, Frame
from launchdeck.control_api.api.json_io import MAX_BODY_BYTES
from launchdeck.control_api.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from launchdeck.control_api.api.reference import render_reference

API_VERSION = "1"
OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/docs"
NDJSON = "application/x-ndjson"
REF = "#/components/schemas/{name}"

# Who may call a route: no token (`public`), a webhook's own signature (`signature`), any valid
# token (`token`: what it shows depends on the token), an admin token, or a token of the project
# involved holding the scope (or a stronger one: write ⊃ deploy ⊃ read; admin passes all).
Scope = Literal["public", "signature", "token", "admin", "read", "deploy", "write"]

SCOPE_TEXT: dict[str, str] = {
    "public": "no token",
    "signature": "no token; the request carries the git host's signature",
    "token": "any valid token (it sees what its scopes allow)",
    "admin": "an admin token",
    "read": "a token of the project with read (or deploy, write, admin)",
    "deploy": "a token of the project with deploy (or write, admin)",
    "write": "a token of the project with write (or admin)",
}


@dataclass(frozen=True)
class Param:
    """A query parameter (path parameters come from the path: `PATH_PARAMS`)."""

    name: str
    description: str
    schema: dict[str, Any]


def _int(minimum: int, maximum: int | None = None, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default
    return schema


LIMIT = Param(
    "limit",
    f"items per page (default {DEFAULT_LIMIT})",
    _int(1, MAX_LIMIT, DEFAULT_LIMIT),
)
CURSOR = Param(
    "cursor",
    "the `next_cursor` of the previous page (opaque)",
    {"type": "string", "maxLength": 256},
)
PAGE = (LIMIT, CURSOR)
AFTER_SEQ = Param("after_seq", "only the lines after this seq", _int(0, 2**63 - 1, 0))
FROM_SEQ = Param("from_seq", "the first line to send (default 1)", _int(1, 2**63 - 1, 1))
BATCH = Param(
    "batch",
    "`true` (or N ≥ 2: at most N lines a frame): `logs` frames carrying a batch of lines when the"
    " viewer is behind; absent or `false`: one `log` frame per line",
    {
        "anyOf": [
            {"enum": ["true", "false", "yes", "no", "on", "off"]},
            {"type": "integer", "minimum": 0, "maximum": MAX_BATCH_LINES},
        ]
    },
)
TAIL = Param("tail", "the last N lines (default 100)", _int(0, 10_000, 100))
SINCE = Param(
    "since",
    "lines since an RFC 3339 time or a duration ago (`10m`, `2h`)",
    {"type": "string", "maxLength": 64},
)
FROM_CURSOR = Param("from_cursor", "lines from an `AppLogRecord.cursor`", _int(1, 2**63 - 1))
APP_LOG = (TAIL, SINCE, FROM_CURSOR)
SCHEDULE_ID = Param(
    "schedule_id", "only the runs of this schedule", {"type": "string", "format": "uuid"}
)
AUDIT_PROJECT = Param(
    "project", "only this project's entries (id or name)", {"type": "string", "maxLength": 200}
)
TEMPLATE_VERSION = Param("version", "this version (default: the latest)", _int(1, 2**31 - 1))
DRY_RUN_PROMPTS = Param(
    "prompts", "how many items' rendered prompts to show (default 3)", _int(0, 50, 3)
)
ITEM_STATUS = Param(
    "status", "only the items of this status", {"enum": ["pending", "done", "failed"]}
)
EXPORT_FORMAT = Param(
    "format", "the file's format (default jsonl)", {"enum": ["jsonl", "csv", "parquet"]}
)
TIMELINE_BUCKET = Param(
    "bucket_s",
    "seconds per bucket (default: chosen so there are at most 120)",
    _int(1, 86_400),
)
COST_DAYS = Param("days", "how many UTC days, today included (default 30)", _int(1, 366, 30))
GENERATION_UPLOAD_NOTE = (
    "The body is `GenerationCreate` as JSON, or `multipart/form-data` with that JSON as the"
    " `spec` part and the rows as a file part `rows` (`.jsonl`/`.ndjson` or `.csv`, by its file"
    " name or Content-Type `application/x-ndjson`/`text/csv`), read as it arrives: the file may"
    " be larger than the JSON body limit. Exactly one of `variables`, `rows` or an uploaded file."
)
AUDIT_ACTION = Param(
    "action", "only this action (`build.create`, …)", {"type": "string", "maxLength": 200}
)
LINES_LIMIT = Param("limit", "at most this many lines (with since or from_cursor)", _int(1, 10_000))

# A webhook: 401 for a wrong or missing signature, 404 for an unknown project, 400/422 for a
# body that is not JSON or not a push, 413 past LAUNCHDECK_WEBHOOK_MAX_BYTES.
HOOK_ERRORS = (400, 401, 404, 413, 422, 503)
HOOK_NOTE = (
    "The body is the git host's JSON event (a form with a `payload` field is read too). A push"
    " to the project branch builds the pushed commit for production, another branch for a"
    " preview, a tag only when the project has `build_tags`; a deleted branch and other events"
    " build nothing. 202 with `status`: `queued` (and `build_id`), `ignored` (and `reason`) or"
    " `duplicate` (a delivery id seen before: nothing built again). See docs/api.md."
)

# Statuses every route of a kind can answer, added to a route's own `errors`.
AUTH_ERRORS = (401, 503)
BODY_ERRORS = (400, 413, 422)
PROJECT_ERRORS = (403, 404)


@dataclass(frozen=True)
class RouteDoc:
    """One route: what it does, who may call it, what it takes and what it answers.

    `body`/`response` are msgspec types (None: no JSON body); `media` replaces the JSON response
    by other media types (name → schema); `websocket` marks a route that upgrades (101).
    """

    method: str
    path: str
    summary: str
    tag: str
    scope: Scope
    status: int = 200
    body: Any = None
    body_optional: bool = False
    response: Any = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    media: dict[str, dict[str, Any]] | None = None
    websocket: bool = False
    description: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path.removeprefix("/api/v1")).strip("/") or "index"
        return f"{self.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', words.lower())}".strip("_")

    def error_statuses(self) -> list[int]:
        found = set(self.errors)
        if self.scope not in ("public", "signature"):
            found.update(AUTH_ERRORS)
        if self.scope in ("read", "deploy", "write"):
            found.update(PROJECT_ERRORS)
        if self.scope == "admin":
            found.add(403)
        if self.body is not None:
            found.update(BODY_ERRORS)
        if self.query:
            found.add(422)
        return sorted(found)


TEXT_LOG = {"schema": {"type": "string"}}

ROUTES: tuple[RouteDoc, ...] = (
    # --- probes and this description ---
    RouteDoc(
        "GET",
        "/",
        "Where things are (for a person opening the API's URL)",
        "system",
        "public",
        media={"application/json": {"schema": {"type": "object"}}},
    ),
    RouteDoc("GET", "/health", "Liveness: the process is up", "system", "public", response=Health),
    RouteDoc(
        "GET",
        "/ready",
        "Readiness: PostgreSQL, NATS and the streams used answer (else 503 with the same body)",
        "system",
        "public",
        response=Readiness,
        errors=(503,),
    ),
    RouteDoc(
        "GET",
        "/metrics",
        "Prometheus metrics (text exposition format)",
        "system",
        "public",
        media={"text/plain": {"schema": {"type": "string"}}},
        errors=(503,),
    ),
    RouteDoc(
        "GET",
        OPENAPI_PATH,
        "This OpenAPI 3.1 document",
        "system",
        "public",
        media={"application/json": {"schema": {"type": "object"}}},
    ),
    RouteDoc(
        "GET",
        DOCS_PATH,
        "The API reference as an HTML page, rendered from this document",
        "system",
        "public",
        media={"text/html": {"schema": {"type": "string"}}},
    ),
    # --- projects ---
    RouteDoc(
        "POST",
        "/api/v1/projects",
        "Create a project (the only response that shows its webhook secret)",
        "projects",
        "admin",
        status=201,
        body=ProjectCreate,
        response=ProjectCreated,
        errors=(409,),
        headers={"Location": "the project's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects",
        "List projects (by name)",
        "projects",
        "token",
        response=Page[ProjectOut],
        query=PAGE,
    ),
    RouteDoc("GET", "/api/v1/projects/{id}", "A project", "projects", "read", response=ProjectOut),
    RouteDoc(
        "PATCH",
        "/api/v1/projects/{id}",
        "Change a project: only the fields present change",
        "projects",
        "write",
        body=ProjectUpdate,
        response=ProjectOut,
        errors=(409,),
    ),
    RouteDoc(
        "DELETE",
        "/api/v1/projects/{id}",
        "Delete a project (its apps and routes are taken down)",
        "projects",
        "write",
        status=204,
    ),
    # --- git-host webhooks (api/hooks.py) ---
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/webhook-secret",
        "Rotate the project's webhook secret: the new one is shown here only, the old one stops"
        " verifying at once",
        "webhooks",
        "write",
        response=WebhookSecretOut,
    ),
    RouteDoc(
        "POST",
        "/api/v1/hooks/github/{project}",
        "GitHub push webhook: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`, "
        "`X-GitHub-Event`; deduplicated by `X-GitHub-Delivery`",
        "webhooks",
        "signature",
        status=202,
        response=HookAnswer,
        errors=HOOK_ERRORS,
        description=HOOK_NOTE,
    ),
    RouteDoc(
        "POST",
        "/api/v1/hooks/gitlab/{project}",
        "GitLab push webhook: `X-Gitlab-Token` is the secret, `X-Gitlab-Event`; "
        "deduplicated by `X-Gitlab-Event-UUID`",
        "webhooks",
        "signature",
        status=202,
        response=HookAnswer,
        errors=HOOK_ERRORS,
        description=HOOK_NOTE,
    ),
    RouteDoc(
        "POST",
        "/api/v1/hooks/gitea/{project}",
        "Gitea/Forgejo push webhook: `X-Gitea-Signature` (or `X-Forgejo-Signature`), "
        "`X-Gitea-Event`; deduplicated by `X-Gitea-Delivery`",
        "webhooks",
        "signature",
        status=202,
        response=HookAnswer,
        errors=HOOK_ERRORS,
        description=HOOK_NOTE,
    ),
    RouteDoc(
        "POST",
        "/api/v1/hooks/generic/{project}",
        "Generic push webhook: `ref` and `after`, signed like GitHub; deduplicated "
        "by `X-Delivery-Id` (else the body's hash)",
        "webhooks",
        "signature",
        status=202,
        response=HookAnswer,
        errors=HOOK_ERRORS,
        description=HOOK_NOTE,
    ),
    # --- env vars ---
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/env",
        "List a project's env vars: names and targets, never values",
        "env",
        "read",
        response=Page[EnvVarOut],
        query=PAGE,
    ),
    RouteDoc(
        "PUT",
        "/api/v1/projects/{id}/env/{key}",
        "Set an env var (encrypted at rest, never shown again)",
        "env",
        "write",
        body=EnvVarSet,
        response=EnvVarOut,
    ),
    RouteDoc(
        "DELETE",
        "/api/v1/projects/{id}/env/{key}",
        "Unset an env var",
        "env",
        "write",
        status=204,
        errors=(422,),
    ),
    # --- builds ---
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/builds",
        "Build a ref (default: the project's branch), and deploy it unless told not to",
        "builds",
        "deploy",
        status=202,
        body=BuildCreate,
        body_optional=True,
        response=BuildOut,
        headers={"Location": "the build's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/builds",
        "A project's builds, newest first",
        "builds",
        "read",
        response=Page[BuildOut],
        query=PAGE,
    ),
    RouteDoc("GET", "/api/v1/builds/{id}", "A build", "builds", "read", response=BuildOut),
    RouteDoc(
        "POST",
        "/api/v1/builds/{id}/cancel",
        "Cancel a queued or running build (409 once it has finished)",
        "builds",
        "deploy",
        status=202,
        response=BuildOut,
        errors=(409,),
    ),
    RouteDoc(
        "GET",
        "/api/v1/builds/{id}/logs",
        "A build's log so far (complete once it has finished)",
        "logs",
        "read",
        query=(AFTER_SEQ,),
        media={"text/plain": TEXT_LOG, NDJSON: {"schema": {"type": "string"}}},
        description=(
            "`text/plain` (one line per log line) by default; with `Accept: application/x-ndjson`"
            " one `LogRecord` JSON object per line."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/builds/{id}/logs/ws",
        "A build's log over a WebSocket: replay from `from_seq`, live lines, then `end`",
        "logs",
        "read",
        status=101,
        query=(FROM_SEQ, BATCH),
        websocket=True,
        errors=(400,),
    ),
    # --- deployments ---
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/deployments",
        "A project's deployments, newest first",
        "deployments",
        "read",
        response=Page[DeploymentOut],
        query=PAGE,
    ),
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/deployments",
        "Activate a build in an environment (promote a preview, roll back to any build)",
        "deployments",
        "deploy",
        status=202,
        body=DeploymentCreate,
        response=DeploymentOut,
        errors=(409,),
        headers={"Location": "the deployment's URL"},
    ),
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/rollback",
        "Re-activate the previous successful production deployment",
        "deployments",
        "deploy",
        status=202,
        response=DeploymentOut,
        errors=(409,),
        headers={"Location": "the deployment's URL"},
    ),
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/redeploy",
        "Re-activate the live build with the current env vars (no rebuild)",
        "deployments",
        "deploy",
        status=202,
        body=Redeploy,
        body_optional=True,
        response=DeploymentOut,
        errors=(409,),
        headers={"Location": "the deployment's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/deployments/{id}",
        "A deployment",
        "deployments",
        "read",
        response=DeploymentOut,
    ),
    # --- runs ---
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/runs",
        "Run a command once in the project's live production release",
        "runs",
        "deploy",
        status=202,
        body=RunCreate,
        response=RunOut,
        headers={"Location": "the run's URL"},
        description=(
            "The run is `queued`, then `running` in the live release (its sandbox, its production"
            " env vars), then `succeeded` (exit code 0) or `failed` (`error` says why)."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/runs",
        "A project's runs, newest first (one schedule's with `schedule_id`)",
        "runs",
        "read",
        response=Page[RunOut],
        query=(*PAGE, SCHEDULE_ID),
    ),
    RouteDoc("GET", "/api/v1/runs/{id}", "A run", "runs", "read", response=RunOut),
    RouteDoc(
        "POST",
        "/api/v1/runs/{id}/cancel",
        "Cancel a queued or running run (409 once it has finished)",
        "runs",
        "deploy",
        status=202,
        response=RunOut,
        errors=(409,),
    ),
    RouteDoc(
        "GET",
        "/api/v1/runs/{id}/logs",
        "A run's log so far (complete once it has finished)",
        "logs",
        "read",
        query=(AFTER_SEQ,),
        media={"text/plain": TEXT_LOG, NDJSON: {"schema": {"type": "string"}}},
        description=(
            "`text/plain` (one line per log line) by default; with `Accept: application/x-ndjson`"
            " one `RunLogRecord` JSON object per line."
        ),
    ),
    # --- generation jobs (api/generations.py) ---
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/generations",
        "Start a generation job: a pinned template version over many items",
        "generations",
        "deploy",
        status=202,
        body=GenerationCreate,
        response=GenerationOut,
        headers={"Location": "the job's URL"},
        description=(
            GENERATION_UPLOAD_NOTE + " The job is `queued`, then `running`, then `succeeded`,"
            " `failed`, `budget_exceeded` or `cancelled`; follow it on the `generation:<id>`"
            " channel of `/api/v1/ws`."
        ),
    ),
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/generations/dry-run",
        "Dry run: render the first prompts and estimate tokens and cost; nothing is stored",
        "generations",
        "read",
        body=GenerationCreate,
        response=GenerationEstimate,
        query=(DRY_RUN_PROMPTS,),
        description=(
            GENERATION_UPLOAD_NOTE + " No model is called. An item that does not render (an"
            " undefined variable) is a 422 naming `items[<index>]`, the step and the line."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/generations",
        "A project's generation jobs, newest first",
        "generations",
        "read",
        response=Page[GenerationOut],
        query=PAGE,
    ),
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}",
        "A generation job and its totals",
        "generations",
        "read",
        response=GenerationOut,
    ),
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}/items",
        "A job's items in index order (their variables, outputs or errors)",
        "generations",
        "read",
        response=Page[GenerationItemOut],
        query=(*PAGE, ITEM_STATUS),
    ),
    RouteDoc(
        "POST",
        "/api/v1/generations/{id}/cancel",
        "Cancel a queued or running job: no new call starts (409 once it has finished)",
        "generations",
        "deploy",
        response=GenerationOut,
        errors=(409,),
    ),
    # --- generation charts (api/generation_charts.py) ---
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}/timeline",
        "A job's items finished per time bucket: count, items/s, tokens, cost (for charts)",
        "generations",
        "read",
        response=GenerationTimeline,
        query=(TIMELINE_BUCKET,),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/generations/costs",
        "A project's generation cost per UTC day, across its jobs",
        "generations",
        "read",
        response=GenerationCosts,
        query=(COST_DAYS,),
    ),
    # --- generation results (api/generation_results.py) ---
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}/export",
        "Export a job's items as JSONL, CSV or Parquet (streamed)",
        "generations",
        "read",
        query=(EXPORT_FORMAT, ITEM_STATUS),
        errors=(404,),
        media={
            NDJSON: {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
        description=(
            "Every item by index: index, status, group, variables, outputs (step → text, or a"
            " `json` step's value), tokens, cost, cached, error. CSV and Parquet have a"
            " `variables.<name>` column per variable (the job's order) and an `outputs.<step>`"
            " column per step (a `json` value as JSON text). Sent with chunked transfer encoding"
            " as it is read; a cut transfer is an incomplete file."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}/manifests.zip",
        "A zip of one `<group>/manifest.json` per group, with each item's outputs",
        "generations",
        "read",
        errors=(404,),
        media={"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        description=(
            "A manifest: the group, the job (template, version, model), its items (index,"
            " slug, status, variables, output summaries, tokens, cost) and totals; each item's"
            " outputs are at `<group>/<item>/<step>.md|.json`. Without `group_by`, one"
            " `manifest.json` at the root; items with an empty group are in `ungrouped/`."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/generations/{id}/manifests/{group}",
        "One group's manifest.json, by its directory name in the zip",
        "generations",
        "read",
        errors=(404,),
        media={"application/json": {"schema": {"type": "object"}}},
    ),
    RouteDoc(
        "POST",
        "/api/v1/generations/{id}/publish",
        "Publish the done items as a static site, built and deployed to a project",
        "generations",
        "deploy",
        status=202,
        body=GenerationPublish,
        body_optional=True,
        response=GenerationPublished,
        errors=(409,),
        headers={"Location": "the deployment's URL"},
        description=(
            "One HTML page per done item from the Markdown of `step` (sanitised: model output"
            " is untrusted), an index per group, a root index and sitemap.xml, stored as a"
            " succeeded build (trigger `generation`) of `project` and deployed like any build."
            " A `json` step is a 422 (`step`); no done item is a 409. Needs deploy on the job's"
            " project and on `project`."
        ),
    ),
    # --- tokens ---
    RouteDoc(
        "POST",
        "/api/v1/tokens",
        "Create an API token (the only response that shows its value)",
        "tokens",
        "admin",
        status=201,
        body=TokenCreate,
        response=TokenCreated,
        headers={"Location": "the token's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/tokens",
        "List API tokens, newest first (never their values)",
        "tokens",
        "admin",
        response=Page[TokenOut],
        query=PAGE,
    ),
    RouteDoc(
        "DELETE",
        "/api/v1/tokens/{id}",
        "Revoke a token (at once; its row stays for the audit log)",
        "tokens",
        "admin",
        status=204,
        errors=(404,),
    ),
    # --- audit ---
    RouteDoc(
        "GET",
        "/api/v1/audit",
        "The audit log, newest first: who did what to which project, when",
        "audit",
        "admin",
        response=Page[AuditEntryOut],
        query=(*PAGE, AUDIT_PROJECT, AUDIT_ACTION),
        errors=(404,),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/audit",
        "A project's audit log, newest first",
        "audit",
        "write",
        response=Page[AuditEntryOut],
        query=(*PAGE, AUDIT_ACTION),
    ),
    # --- schedules ---
    RouteDoc(
        "POST",
        "/api/v1/projects/{id}/schedules",
        "Create a schedule: a cron expression, a time zone and an action",
        "schedules",
        "write",
        status=201,
        body=ScheduleCreate,
        response=ScheduleOut,
        errors=(409,),
        headers={"Location": "the schedule's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/schedules",
        "A project's schedules (by name), with their next run and last outcome",
        "schedules",
        "read",
        response=Page[ScheduleOut],
        query=PAGE,
    ),
    RouteDoc(
        "GET", "/api/v1/schedules/{id}", "A schedule", "schedules", "read", response=ScheduleOut
    ),
    RouteDoc(
        "PATCH",
        "/api/v1/schedules/{id}",
        "Change a schedule: only the fields present change (`action` as a whole)",
        "schedules",
        "write",
        body=ScheduleUpdate,
        response=ScheduleOut,
        errors=(409,),
    ),
    RouteDoc(
        "DELETE", "/api/v1/schedules/{id}", "Delete a schedule", "schedules", "write", status=204
    ),
    # --- prompt templates (api/templates.py): not per project; writes are an admin's ---
    RouteDoc(
        "POST",
        "/api/v1/templates",
        "Create a prompt template (version 1): steps checked for syntax and JSON Schemas",
        "templates",
        "admin",
        status=201,
        body=TemplateCreate,
        response=TemplateOut,
        errors=(409,),
        headers={"Location": "the template's URL"},
    ),
    RouteDoc(
        "GET",
        "/api/v1/templates",
        "List templates (by name), each at its latest version",
        "templates",
        "token",
        response=Page[TemplateOut],
        query=PAGE,
    ),
    RouteDoc(
        "GET",
        "/api/v1/templates/{id}",
        "A template at its latest version (or `?version=`), with its version numbers",
        "templates",
        "token",
        response=TemplateOut,
        query=(TEMPLATE_VERSION,),
        errors=(404,),
    ),
    RouteDoc(
        "PUT",
        "/api/v1/templates/{id}",
        "Add the next version of a template (versions never change)",
        "templates",
        "admin",
        status=201,
        body=TemplateUpdate,
        response=TemplateOut,
        errors=(404,),
        headers={"Location": "the new version's URL"},
    ),
    RouteDoc(
        "POST",
        "/api/v1/templates/{id}/render",
        "Dry run: each step's prompt for one item's variables, without calling a model",
        "templates",
        "token",
        body=TemplateRender,
        body_optional=True,
        response=TemplateRendered,
        errors=(404,),
        description=(
            "Earlier steps' outputs are placeholders (a `json` step's: a value of its schema's"
            " shape). An undefined variable or a failing expression is a 422 naming the step's"
            " prompt (`steps[i].prompt`), the line and the variable."
        ),
    ),
    # --- running apps ---
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/apps",
        "A project's running app instances, as the deploy-engine reports them now",
        "logs",
        "read",
        response=ProjectApps,
        errors=(503,),
        description=(
            "Every slot (production, then previews) and process: status, health, restarts,"
            " last exit, uptime; a container app's container, image (id, size in bytes),"
            " memory and CPU limits and the container's state. 503 when the deploy-engine"
            " does not answer within 2 s."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/logs",
        "A running app's recent log lines (one of tail, since, from_cursor)",
        "logs",
        "read",
        query=(*APP_LOG, LINES_LIMIT),
        media={"text/plain": TEXT_LOG, NDJSON: {"schema": {"type": "string"}}},
        description=(
            "`text/plain` by default; with `Accept: application/x-ndjson` one `AppLogRecord` JSON"
            " object per line. Follow it live over the `/ws` route below."
        ),
    ),
    RouteDoc(
        "GET",
        "/api/v1/projects/{id}/logs/ws",
        "A running app's log over a WebSocket: recent lines, then live ones",
        "logs",
        "read",
        status=101,
        query=APP_LOG,
        websocket=True,
        errors=(400,),
    ),
    RouteDoc(
        "GET",
        "/api/v1/ws",
        "The multiplexed WebSocket: subscribe to build logs, project events, app logs",
        "logs",
        "token",
        status=101,
        websocket=True,
        errors=(400,),
    ),
)

# Path parameters by name, and by the path's first segment where one name means several things.
PATH_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "projects": ("the project's id or name", {"type": "string", "minLength": 1, "maxLength": 200}),
    "builds": ("the build's id", {"type": "string", "format": "uuid"}),
    "deployments": ("the deployment's id", {"type": "string", "format": "uuid"}),
    "runs": ("the run's id", {"type": "string", "format": "uuid"}),
    "tokens": ("the token's id", {"type": "string", "format": "uuid"}),
    "schedules": ("the schedule's id", {"type": "string", "format": "uuid"}),
    "generations": ("the generation job's id", {"type": "string", "format": "uuid"}),
    "group": ("the group's directory name (a slug)", {"type": "string", "minLength": 1}),
    "templates": (
        "the template's id or name",
        {"type": "string", "minLength": 1, "maxLength": 200},
    ),
    "project": ("the project's id or name", {"type": "string", "minLength": 1, "maxLength": 200}),
    "key": (
        "the env var's name",
        {"type": "string", "pattern": ENV_KEY_PATTERN, "maxLength": ENV_KEY_MAX_LENGTH},
    ),
}


def path_param(path: str, name: str) -> tuple[str, dict[str, Any]]:
    """What a `{name}` of `path` is: by its name, else by the collection it follows."""
    if name in PATH_PARAMS:
        return PATH_PARAMS[name]
    collection = path.removeprefix("/api/v1/").split("/", 1)[0]
    return PATH_PARAMS.get(collection, (f"the {name}", {"type": "string", "minLength": 1}))


_PATH_NAMES = re.compile(r"{([^}]+)}")

WEBSOCKET_NOTE = (
    "A WebSocket (OpenAPI cannot describe one): connect with `Upgrade: websocket`; the server"
    " answers 101 and then sends `WsFrame` JSON text frames. The token may come as `?token=`"
    " (browsers cannot set headers on a WebSocket). A viewer too slow for its queue is closed with"
    " 1013 and resumes with `from_seq` (or `from_cursor`)."
)
MUX_NOTE = " The client sends `WsClientMessage` frames (subscribe / unsubscribe)."


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "an error"),
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}},
    }


_STATUS_TEXT = {
    400: "the body is not JSON (or not UTF-8), or the request is malformed",
    401: "no token, or one that is invalid, expired or revoked",
    403: "the token lacks the scope needed",
    404: "no such resource, or one of another project",
    409: "the current state does not allow it",
    413: f"the body is larger than {MAX_BODY_BYTES} bytes, the most the API reads",
    422: "the input does not fit: `errors` names each field and why",
    503: "PostgreSQL or NATS did not answer; try again after `Retry-After` seconds",
}


def _operation(route: RouteDoc, names: dict[Any, str]) -> dict[str, Any]:
    description = route.description
    if route.websocket:
        description = " ".join(
            filter(None, [description, WEBSOCKET_NOTE, MUX_NOTE if "{" not in route.path else ""])
        )
    description = " ".join(filter(None, [description, f"Access: {SCOPE_TEXT[route.scope]}."]))
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": description,
        "tags": [route.tag],
        "x-scope": route.scope,
    }
    parameters: list[dict[str, Any]] = []
    for name in _PATH_NAMES.findall(route.path):
        text, schema = path_param(route.path, name)
        parameters.append(
            {"name": name, "in": "path", "required": True, "description": text, "schema": schema}
        )
    for param in route.query:
        parameters.append(
            {
                "name": param.name,
                "in": "query",
                "required": False,
                "description": param.description,
                "schema": param.schema,
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if route.scope in ("public", "signature"):
        operation["security"] = []
    if route.body is not None:
        operation["requestBody"] = {
            "required": not route.body_optional,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(name=names[route.body])}}
            },
        }
    ok: dict[str, Any] = {"description": route.summary}
    if route.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": REF.format(name=names[route.response])}}
        }
    elif route.media is not None:
        ok["content"] = route.media
    if route.websocket:
        ok["description"] = "Switching Protocols: the WebSocket is open"
        ok["x-websocket"] = {
            "server": {"$ref": REF.format(name="WsFrame")},
            **(
                {"client": {"$ref": REF.format(name="WsClientMessage")}}
                if "{" not in route.path
                else {}
            ),
        }
    if route.headers:
        ok["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in route.headers.items()
        }
    responses: dict[str, Any] = {str(route.status): ok}
    for status in route.error_statuses():
        if status == 503 and route.path == "/ready":
            responses["503"] = {
                "description": "not ready: which check failed and why",
                "content": {"application/json": {"schema": {"$ref": REF.format(name="Readiness")}}},
            }
        else:
            responses[str(status)] = _problem_response(status)
    operation["responses"] = responses
    return operation


def _schema_types() -> list[Any]:
    seen: list[Any] = [Problem]
    for route in ROUTES:
        for type_ in (route.body, route.response):
            if type_ is not None and type_ not in seen:
                seen.append(type_)
    return seen


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ROUTES` (built once; it depends on code only)."""
    types = _schema_types()
    refs, components = msgspec.json.schema_components(
        [*types, LogRecord, AppLogRecord, RunLogRecord, ClientMessage, Frame],
        ref_template=REF,
    )
    names: dict[Any, str] = {}
    for type_, ref in zip(types, refs, strict=False):
        names[type_] = ref["$ref"].rsplit("/", 1)[-1]
    # The WebSocket messages are unions (no name of their own): named here.
    components["WsClientMessage"] = refs[-2]
    components["WsFrame"] = refs[-1]
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, names)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Launchdeck control API",
            "version": API_VERSION,
            "description": (
                "Deploy git repositories as static sites and running apps. Errors are"
                " `application/problem+json` (RFC 9457) with `status`, `title`, `detail` and, for"
                " invalid input, `errors: [{field, message}]`. Lists are pages:"
                " `{items, next_cursor}`; pass `next_cursor` back as `?cursor=`. Ids are UUIDs;"
                " a project's `{id}` also takes its name. Timestamps are RFC 3339 UTC. The"
                f" reference page: {DOCS_PATH}."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in dict.fromkeys(r.tag for r in ROUTES)],
        "security": [{"bearer": []}, {"token_query": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <token>` (`launchdeck tokens create`)",
                },
                "token_query": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "the same token as `?token=`, for WebSocket clients",
                },
            },
        },
    }


@cache
def _document_bytes() -> bytes:
    return msgspec.json.encode(openapi_document())


async def get_openapi(_request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json")


@cache
def _reference_html() -> str:
    return render_reference(openapi_document())


# The page needs nothing but its own inline style: a browser refuses anything else on it.
REFERENCE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


async def get_reference(_request: web.Request) -> web.Response:
    response = web.Response(text=_reference_html(), content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = REFERENCE_CSP
    return response


def setup_openapi_routes(app: web.Application) -> None:
    """Register `GET /api/v1/openapi.json` and the HTML reference `GET /api/docs`."""
    app.router.add_get(OPENAPI_PATH, get_openapi)
    app.router.add_get(DOCS_PATH, get_reference)
