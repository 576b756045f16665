"""NATS subjects, stream, consumer, object-store and KV names: the one place they are spelled.

Services import these constants; no subject is written as a string literal anywhere else.
An operator can read every one of them with the NATS CLI (see docs/nats.md).
"""

from __future__ import annotations

# --- work queues (commands) -------------------------------------------------------------
STREAM_BUILDS = "BUILDS"
SUBJECT_BUILD_JOBS = "ld.jobs.build"

STREAM_DEPLOYS = "DEPLOYS"
SUBJECT_DEPLOY_JOBS = "ld.jobs.deploy"
SUBJECT_UNDEPLOY_JOBS = "ld.jobs.undeploy"  # same stream, its own consumer
SUBJECT_RUN_JOBS = "ld.jobs.run"  # same stream, its own consumer: one-off runs (RunRequested)

STREAM_GENERATIONS = "GENERATIONS"
SUBJECT_GENERATION_JOBS = "ld.jobs.generate"

# --- events (status changes) ------------------------------------------------------------
STREAM_EVENTS = "EVENTS"
SUBJECT_EVENTS_ALL = "ld.events.>"
SUBJECT_BUILD_EVENTS_PREFIX = "ld.events.build"
SUBJECT_DEPLOYMENT_EVENTS_PREFIX = "ld.events.deployment"
SUBJECT_GENERATION_EVENTS_PREFIX = "ld.events.generation"
SUBJECT_RUN_EVENTS_PREFIX = "ld.events.run"

# --- logs -------------------------------------------------------------------------------
STREAM_LOGS = "LOGS"
SUBJECT_LOGS_ALL = "ld.logs.>"
SUBJECT_BUILD_LOGS_PREFIX = "ld.logs.build"
SUBJECT_APP_LOGS_PREFIX = "ld.logs.app"
SUBJECT_RUN_LOGS_PREFIX = "ld.logs.run"

# --- request/reply and control (core NATS, never stored) -----------------------------------
SUBJECT_ENV_REQUESTS = "ld.rpc.env"  # EnvRequest → EnvReply, served by the control-api
SUBJECT_APPS_REPORT = "ld.rpc.apps.report"  # AppsReportRequest → AppsReport, by the engine
SUBJECT_BUILD_CANCEL = "ld.control.build.cancel"  # BuildCancelRequested, heard by every worker

# --- JetStream advisories (published by the NATS server itself) ---------------------------
ADVISORY_MAX_DELIVERIES_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

# --- durable consumers --------------------------------------------------------------------
CONSUMER_BUILD_WORKERS = "build-workers"
CONSUMER_DEPLOY_ENGINES = "deploy-engines"
CONSUMER_UNDEPLOY_ENGINES = "deploy-engines-undeploy"
CONSUMER_RUN_ENGINES = "deploy-engines-run"
CONSUMER_GENERATORS = "generators"
CONSUMER_CONTROL_API_EVENTS = "control-api-events"

# --- core NATS queue groups (one member of the group gets each message) -------------------
QUEUE_CONTROL_API = "control-api"

# --- object stores and KV -----------------------------------------------------------------
OBJECT_STORE_ARTIFACTS = "artifacts"
KV_LEASES = "leases"
KV_CANCELLATIONS = "cancellations"  # build or run id → its cancel request (a mark)

# --- service names: NATS connection names, and micro-service names (nats micro ls) ---------------
# The control-api serves HTTP; its name only labels its NATS connection.
SERVICE_CONTROL_API = "launchdeck-control-api"
SERVICE_BUILD_WORKER = "launchdeck-build-worker"
SERVICE_DEPLOY_ENGINE = "launchdeck-deploy-engine"
SERVICE_GENERATOR = "launchdeck-generator"


def service_status_subject(service: str) -> str:
    """`ld.svc.<service>.status`: each worker's status endpoint (next to PING/INFO/STATS)."""
    return f"ld.svc.{service}.status"


def build_event_subject(project_id: str, build_id: str) -> str:
    """`ld.events.build.<project>.<build>`; a project's builds: `ld.events.build.<project>.*`."""
    return f"{SUBJECT_BUILD_EVENTS_PREFIX}.{project_id}.{build_id}"


def deployment_event_subject(project_id: str, deployment_id: str) -> str:
    return f"{SUBJECT_DEPLOYMENT_EVENTS_PREFIX}.{project_id}.{deployment_id}"


def project_events_filter(project_id: str) -> list[str]:
    """Subjects carrying every event of one project (for `project:<id>:events`)."""
    return [
        f"{SUBJECT_BUILD_EVENTS_PREFIX}.{project_id}.*",
        f"{SUBJECT_DEPLOYMENT_EVENTS_PREFIX}.{project_id}.*",
        f"{SUBJECT_RUN_EVENTS_PREFIX}.{project_id}.*",
    ]


def run_event_subject(project_id: str, run_id: str) -> str:
    """`ld.events.run.<project>.<run>`: status changes of one run (`RunStatusChanged`)."""
    return f"{SUBJECT_RUN_EVENTS_PREFIX}.{project_id}.{run_id}"


def run_log_subject(run_id: str) -> str:
    """`ld.logs.run.<run>`: every log batch of one run (`RunLogBatch`), in order."""
    return f"{SUBJECT_RUN_LOGS_PREFIX}.{run_id}"


def generation_event_subject(job_id: str) -> str:
    return f"{SUBJECT_GENERATION_EVENTS_PREFIX}.{job_id}"


def build_log_subject(build_id: str) -> str:
    """`ld.logs.build.<build>`: every log batch of one build, all attempts, in order."""
    return f"{SUBJECT_BUILD_LOGS_PREFIX}.{build_id}"


def app_log_subject(project_id: str) -> str:
    """`ld.logs.app.<project>`: every log batch of a project's running app (`AppLogBatch`)."""
    return f"{SUBJECT_APP_LOGS_PREFIX}.{project_id}"


def max_deliveries_advisory_subject(stream: str, consumer: str) -> str:
    """`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`: the server stopped
    redelivering a message of `consumer` (JSON body: `stream`, `consumer`, `stream_seq`,
    `deliveries`); the message stays in a work-queue stream until deleted."""
    return f"{ADVISORY_MAX_DELIVERIES_PREFIX}.{stream}.{consumer}"


ARTIFACT_SUFFIX = ".tar.gz"


def artifact_key(build_id: str) -> str:
    """`<build>.tar.gz`: a build's artifact in the `artifacts` object store. One per build and
    named after it, so whoever prunes the store can tell whose each object is."""
    return f"{build_id}{ARTIFACT_SUFFIX}"


def artifact_build_id(key: str) -> str | None:
    """The build an `artifacts` object belongs to (`artifact_key` undone), or None for a key
    that is not a build's artifact."""
    if not key.endswith(ARTIFACT_SUFFIX):
        return None
    return key[: -len(ARTIFACT_SUFFIX)] or None


# --- generation jobs: the generator's requests to the control-api (core NATS request/reply) --
# Postgres is the control-api's alone: the generator reads a job, claims its pending items and
# settles their results through these (docs/architecture.md, "Generation jobs"). Answered only
# to the generator's inbox, in the queue group `control-api`.
SUBJECT_GENERATION_RPC_PREFIX = "ld.rpc.generation"
SUBJECT_GENERATION_START = "ld.rpc.generation.start"  # GenerationStartRequest → …Reply
SUBJECT_GENERATION_CLAIM = "ld.rpc.generation.claim"  # GenerationClaimRequest → …Reply
SUBJECT_GENERATION_SETTLE = "ld.rpc.generation.settle"  # GenerationSettleRequest → …Reply
SUBJECT_GENERATION_CACHE = "ld.rpc.generation.cache"  # GenerationCacheRequest → …Reply
SUBJECT_GENERATION_FINISH = "ld.rpc.generation.finish"  # GenerationFinishRequest → …Reply
# GenerationCancelRequested, heard by every generator (core NATS; the one running it stops).
SUBJECT_GENERATION_CANCEL = "ld.control.generation.cancel"
