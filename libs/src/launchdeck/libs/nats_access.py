"""Who may do what on NATS: one user per service, allowed only the subjects that service uses,
and the operator (the login `launchdeck dev` writes for the NATS CLI).

Why: every build runs code written by whoever can push to a repository (and every npm
`postinstall` script too). A build gets no NATS credentials (its environment is built from
nothing, `build_worker.run.build_env`), and a server configured from this table refuses a client
without any. Should a service's own credentials leak anyway, they allow only what that service
does: the build-worker's cannot queue a deploy, delete a stream or read another service's
replies.

This table is the one source of the permissions: `launchdeck dev` and the test fixtures configure
their servers with `authorization_config`, `deploy/nats/authorization.conf` (included by both
server configurations there) is the same block with the passwords as environment variables
(`python -m launchdeck.libs.nats_access` prints it; a test keeps the file equal to it), and
docs/nats.md explains it.

Provisioning: only the control-api creates and reconciles streams (it may `STREAM.CREATE` and
`STREAM.UPDATE` the platform's streams, nothing else may). The workers wait at start until the
streams they use exist (`libs.service.wait_for_streams`): a right to update a stream is a
right to empty it (limits, subjects), and a worker — the process beside untrusted builds — is the
last one that should hold it. Nothing is lost by waiting: without the control-api nothing is
queued anyway. After a store loss the control-api's EVENTS consumer finds its stream gone, the
process exits, and its next start creates every stream again while the workers wait.

Every service takes its replies on an inbox of its own (`_INBOX.<user>.…`, nats-py's
`inbox_prefix`), so no service may subscribe to another's replies — JetStream API answers and
the messages its consumers deliver. Workers answer NATS micro requests (`nats micro ls`), and the
control-api the workers' env var requests (`ld.rpc.env`), through `allow_responses`: a reply to a
request they received, nothing else.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from launchdeck.contracts import subjects as s
from launchdeck.libs.provisioning import platform_streams

API = "$JS.API"
OPERATOR_USER = "operator"


def object_stream(bucket: str) -> str:
    """The stream under object store `bucket` (nats-py's `OBJ_<bucket>`)."""
    return f"OBJ_{bucket}"


def _stream_api(action: str, *streams: str) -> list[str]:
    """`$JS.API.STREAM.<action>.<stream>` for each stream (INFO, CREATE, UPDATE, MSG.GET…)."""
    return [f"{API}.STREAM.{action}.{stream}" for stream in streams]


def _durable_consumer(stream: str, durable: str) -> list[str]:
    """Pulling jobs from a durable consumer: create it (nats-py's `add_consumer` with a durable
    name), ask for the next message, and ack / nak / term / heartbeat each one."""
    return [
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _micro(service: str) -> list[str]:
    """What a NATS micro-service subscribes to: PING/INFO/STATS for all, by name and by id, and
    its `status` endpoint (`libs.micro`)."""
    return [
        "$SRV.PING",
        "$SRV.INFO",
        "$SRV.STATS",
        f"$SRV.*.{service}",
        f"$SRV.*.{service}.*",
        s.service_status_subject(service),
    ]


@dataclass(frozen=True)
class ServiceAccess:
    """One service's NATS user and what it may do.

    `publish` and `subscribe` are nats-server allow lists (everything else is denied; the own
    inbox is added to `subscribe`); `responds`: may reply to requests it receives (micro);
    `provisions`: creates and reconciles the streams at start, else waits for `streams`.
    """

    service: str  # the connection and micro name, `launchdeck-<service>`
    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    streams: tuple[str, ...] = ()
    provisions: bool = False
    responds: bool = False

    @property
    def inbox_prefix(self) -> str:
        """nats-py's `inbox_prefix` of this service: replies come to `_INBOX.<user>.…`."""
        return f"_INBOX.{self.user}"

    @property
    def subscribe_allow(self) -> tuple[str, ...]:
        return (f"{self.inbox_prefix}.>", *self.subscribe)


def _control_api() -> ServiceAccess:
    streams = platform_streams()
    artifacts = s.OBJECT_STORE_ARTIFACTS
    return ServiceAccess(
        service=s.SERVICE_CONTROL_API,
        user="control-api",
        publish=(
            # The outbox relay: commands, and the events it relays.
            s.SUBJECT_BUILD_JOBS,
            s.SUBJECT_DEPLOY_JOBS,
            s.SUBJECT_UNDEPLOY_JOBS,
            s.SUBJECT_RUN_JOBS,
            s.SUBJECT_GENERATION_JOBS,
            f"{s.SUBJECT_BUILD_EVENTS_PREFIX}.>",
            f"{s.SUBJECT_DEPLOYMENT_EVENTS_PREFIX}.>",
            f"{s.SUBJECT_RUN_EVENTS_PREFIX}.>",
            # A generation job's final progress, when it ends (`finish`) or is cancelled.
            f"{s.SUBJECT_GENERATION_EVENTS_PREFIX}.>",
            # The eof batch of a log whose worker died (abandoned jobs, the log sweep), or of
            # a build cancelled while queued.
            f"{s.SUBJECT_BUILD_LOGS_PREFIX}.>",
            # Cancelling a build: its mark in the `cancellations` bucket, then the word to
            # every worker (core NATS).
            f"$KV.{s.KV_CANCELLATIONS}.>",
            s.SUBJECT_BUILD_CANCEL,
            # Cancelling a generation job: the word to every generator (core NATS; the job's
            # row already says so, which is what a generator that missed it finds).
            s.SUBJECT_GENERATION_CANCEL,
            # What the deploy-engine runs of a project (`GET /api/v1/projects/{id}/apps`): a
            # request, answered to the control-api's own inbox.
            s.SUBJECT_APPS_REPORT,
            # The scheduler's lease (`libs.lease`, key `scheduler`): created, renewed and
            # deleted by writes to its key, read with MSG.GET (the bucket has no direct get).
            f"$KV.{s.KV_LEASES}.>",
            *_stream_api("MSG.GET", f"KV_{s.KV_LEASES}"),
            # Provisioning at start (`libs.provisioning`); /ready asks for stream info.
            *_stream_api("INFO", *streams),
            *_stream_api("CREATE", *streams),
            *_stream_api("UPDATE", *streams),
            # The EVENTS consumer.
            *_durable_consumer(s.STREAM_EVENTS, s.CONSUMER_CONTROL_API_EVENTS),
            # /metrics: each durable consumer's backlog (num_pending, num_ack_pending).
            *(
                f"{API}.CONSUMER.INFO.{stream}.{durable}"
                for stream, durable in (
                    (s.STREAM_BUILDS, s.CONSUMER_BUILD_WORKERS),
                    (s.STREAM_DEPLOYS, s.CONSUMER_DEPLOY_ENGINES),
                    (s.STREAM_DEPLOYS, s.CONSUMER_UNDEPLOY_ENGINES),
                    (s.STREAM_DEPLOYS, s.CONSUMER_RUN_ENGINES),
                    (s.STREAM_GENERATIONS, s.CONSUMER_GENERATORS),
                    (s.STREAM_EVENTS, s.CONSUMER_CONTROL_API_EVENTS),
                )
            ),
            # Log readers (build logs and apps' logs): an ordered consumer per reader (flow
            # control answered on $JS.FC), and the newest batch of a build.
            f"{API}.CONSUMER.CREATE.{s.STREAM_LOGS}",
            f"$JS.FC.{s.STREAM_LOGS}.>",
            *_stream_api("MSG.GET", s.STREAM_LOGS),
            # Abandoned jobs: read the dead command, then delete it from its work queue.
            *_stream_api("MSG.GET", s.STREAM_BUILDS, s.STREAM_DEPLOYS),
            *_stream_api("MSG.DELETE", s.STREAM_BUILDS, s.STREAM_DEPLOYS),
            # Pruning artifacts nobody needs: list the store (the newest metadata, then an
            # ordered consumer over it, whose stream nats-py looks up by subject), delete an
            # object (a `deleted` marker, its chunks purged) and purge the marker too.
            f"{API}.STREAM.NAMES",
            *_stream_api("MSG.GET", object_stream(artifacts)),
            f"{API}.CONSUMER.CREATE.{object_stream(artifacts)}",
            f"$JS.FC.{object_stream(artifacts)}.>",
            f"$O.{artifacts}.M.>",
            *_stream_api("PURGE", object_stream(artifacts)),
            # Publishing a generation job (`POST /api/v1/generations/{id}/publish`): the
            # rendered site is stored as its build's artifact, chunks then metadata (above).
            f"$O.{artifacts}.C.>",
        ),
        subscribe=(
            # WebSocket viewers of a project's (or a generation's) events: core subscriptions.
            s.SUBJECT_EVENTS_ALL,
            # Env var requests of the workers (queue group `control-api`), answered through
            # `allow_responses` to the asker's own inbox: values never go to a stream.
            s.SUBJECT_ENV_REQUESTS,
            # The generator's checkpoint requests (start, claim, settle, cache, finish), in the
            # same queue group, answered to the generator's inbox only.
            s.SUBJECT_GENERATION_START,
            s.SUBJECT_GENERATION_CLAIM,
            s.SUBJECT_GENERATION_SETTLE,
            s.SUBJECT_GENERATION_CACHE,
            s.SUBJECT_GENERATION_FINISH,
            s.max_deliveries_advisory_subject(s.STREAM_BUILDS, s.CONSUMER_BUILD_WORKERS),
            s.max_deliveries_advisory_subject(s.STREAM_DEPLOYS, s.CONSUMER_DEPLOY_ENGINES),
        ),
        streams=streams,
        provisions=True,
        responds=True,
    )


def _build_worker() -> ServiceAccess:
    artifacts = s.OBJECT_STORE_ARTIFACTS
    cancellations = f"KV_{s.KV_CANCELLATIONS}"
    streams = (
        s.STREAM_BUILDS,
        s.STREAM_EVENTS,
        s.STREAM_LOGS,
        object_stream(artifacts),
        cancellations,
    )
    return ServiceAccess(
        service=s.SERVICE_BUILD_WORKER,
        user="build-worker",
        publish=(
            f"{s.SUBJECT_BUILD_EVENTS_PREFIX}.>",
            f"{s.SUBJECT_BUILD_LOGS_PREFIX}.>",
            # A build's env vars, asked of the control-api (the answer comes to its inbox).
            s.SUBJECT_ENV_REQUESTS,
            # The artifact upload: chunks and the object's metadata.
            f"$O.{artifacts}.C.>",
            f"$O.{artifacts}.M.>",
            *_stream_api("INFO", *streams),
            *_durable_consumer(s.STREAM_BUILDS, s.CONSUMER_BUILD_WORKERS),
            # Where a redelivered build's log goes on (the last batch stored).
            *_stream_api("MSG.GET", s.STREAM_LOGS),
            # The object store: an object's metadata, and the chunks of the object an upload
            # replaces (a redelivered build uploads its artifact again).
            *_stream_api("MSG.GET", object_stream(artifacts)),
            *_stream_api("PURGE", object_stream(artifacts)),
            # Whether a build was cancelled (its key in the `cancellations` bucket): read, never
            # written, by the worker.
            *_stream_api("MSG.GET", cancellations),
        ),
        subscribe=(
            *_micro(s.SERVICE_BUILD_WORKER),
            # Cancel requests (every worker hears each; the one running the build stops it).
            s.SUBJECT_BUILD_CANCEL,
        ),
        streams=streams,
        responds=True,
    )


def _deploy_engine() -> ServiceAccess:
    artifacts = object_stream(s.OBJECT_STORE_ARTIFACTS)
    cancellations = f"KV_{s.KV_CANCELLATIONS}"
    # LOGS too: the apps' output is stored there (waited for at start like the others);
    # the `cancellations` bucket: whether a run was cancelled.
    streams = (s.STREAM_DEPLOYS, s.STREAM_EVENTS, s.STREAM_LOGS, artifacts, cancellations)
    return ServiceAccess(
        service=s.SERVICE_DEPLOY_ENGINE,
        user="deploy-engine",
        publish=(
            f"{s.SUBJECT_DEPLOYMENT_EVENTS_PREFIX}.>",
            # A deployment's env vars, asked of the control-api (the answer comes to its inbox).
            s.SUBJECT_ENV_REQUESTS,
            # The output of the apps it runs (`AppLogBatch`, LOGS stream).
            f"{s.SUBJECT_APP_LOGS_PREFIX}.>",
            # One-off runs: their status events and their output (`RunLogBatch`).
            f"{s.SUBJECT_RUN_EVENTS_PREFIX}.>",
            f"{s.SUBJECT_RUN_LOGS_PREFIX}.>",
            *_stream_api("INFO", *streams),
            *_durable_consumer(s.STREAM_DEPLOYS, s.CONSUMER_DEPLOY_ENGINES),
            *_durable_consumer(s.STREAM_DEPLOYS, s.CONSUMER_UNDEPLOY_ENGINES),
            *_durable_consumer(s.STREAM_DEPLOYS, s.CONSUMER_RUN_ENGINES),
            # Artifact downloads (`libs.objects.download`): the object's metadata, then its
            # chunks through an ephemeral pull consumer of its own.
            *_stream_api("MSG.GET", artifacts),
            f"{API}.CONSUMER.CREATE.{artifacts}.>",
            f"{API}.CONSUMER.MSG.NEXT.{artifacts}.*",
            # Whether a run was cancelled (its key in the `cancellations` bucket): read only.
            *_stream_api("MSG.GET", cancellations),
        ),
        subscribe=(
            *_micro(s.SERVICE_DEPLOY_ENGINE),
            # The control-api's questions about the apps it runs (answered through
            # `allow_responses`).
            s.SUBJECT_APPS_REPORT,
        ),
        streams=streams,
        responds=True,
    )


def _generator() -> ServiceAccess:
    # No database and no stream of results: everything a job stores goes through the
    # control-api's `ld.rpc.generation.*` (the answers come to its own inbox).
    streams = (s.STREAM_GENERATIONS,)
    return ServiceAccess(
        service=s.SERVICE_GENERATOR,
        user="generator",
        publish=(
            f"{s.SUBJECT_GENERATION_RPC_PREFIX}.>",
            # Progress of the jobs it runs (`GenerationProgress`, EVENTS stream).
            f"{s.SUBJECT_GENERATION_EVENTS_PREFIX}.>",
            *_stream_api("INFO", *streams),
            *_durable_consumer(s.STREAM_GENERATIONS, s.CONSUMER_GENERATORS),
        ),
        subscribe=(
            *_micro(s.SERVICE_GENERATOR),
            # Cancel requests (every generator hears each; the one running the job stops it).
            s.SUBJECT_GENERATION_CANCEL,
        ),
        streams=streams,
        responds=True,
    )


SERVICES: tuple[ServiceAccess, ...] = (
    _control_api(),
    _build_worker(),
    _deploy_engine(),
    _generator(),
)
USERS: tuple[str, ...] = (*(access.user for access in SERVICES), OPERATOR_USER)


def access_of(service: str) -> ServiceAccess | None:
    """The access of service `service` (`launchdeck-<service>` or the user name `<service>`),
    or None for a name that is not one of the platform's (a test's own connection)."""
    for access in SERVICES:
        if service in (access.service, access.user):
            return access
    return None


def password_variable(user: str) -> str:
    """The environment variable `deploy/nats/*.conf` reads `user`'s password from:
    `NATS_<USER>_PASSWORD` (`NATS_BUILD_WORKER_PASSWORD`, `NATS_OPERATOR_PASSWORD`)."""
    return f"NATS_{user.upper().replace('-', '_')}_PASSWORD"


def new_password() -> str:
    """A fresh password: 24 random bytes in hex after the letters `ld`. Nothing in it needs
    quoting in a URL or a configuration, and it works in an environment variable that
    `deploy/nats/*.conf` reads: nats-server parses such a value as configuration, so a password
    starting with a digit or `-` could be read as a number (or refused)."""
    return "ld" + secrets.token_hex(24)


def _quoted(value: str) -> str:
    # A double-quoted string in nats-server's configuration is JSON's: `$` in it is literal.
    return json.dumps(value)


def _allow_list(subjects: Iterable[str], indent: str) -> str:
    items = [f"{indent}  {_quoted(subject)}" for subject in subjects]
    if not items:
        return "[]"
    return "[\n" + "\n".join(items) + f"\n{indent}]"


def authorization_config(password: Callable[[str], str]) -> str:
    """nats-server's `authorization` block: each service's user with its permissions, and the
    operator, allowed everything. `password(user)` is what the block says for that user's
    password, as configuration text: `literal_password(...)` or `variable_password`."""
    lines = ["authorization {", "  users = ["]
    for access in SERVICES:
        pad = "        "
        lines += [
            "    {",
            f"      user: {_quoted(access.user)}",
            f"      password: {password(access.user)}",
            "      permissions: {",
            f"        publish: {{ allow: {_allow_list(access.publish, pad)} }}",
            f"        subscribe: {{ allow: {_allow_list(access.subscribe_allow, pad)} }}",
        ]
        if access.responds:
            lines.append("        allow_responses: true")
        lines += ["      }", "    }"]
    lines += [
        "    # The operator (the NATS CLI: nats stream ls, nats micro ls…): everything.",
        f"    {{ user: {_quoted(OPERATOR_USER)}, password: {password(OPERATOR_USER)} }}",
        "  ]",
        "}",
    ]
    return "\n".join(lines) + "\n"


def literal_password(passwords: Mapping[str, str]) -> Callable[[str], str]:
    """For `authorization_config`: each user's password from `passwords`, written into the
    configuration (which must then be as private as the passwords: mode 0600)."""
    return lambda user: _quoted(passwords[user])


def variable_password(user: str) -> str:
    """For `authorization_config`: the password read by nats-server from the environment
    variable `password_variable(user)` when it loads the file (it refuses to start without it)."""
    return "$" + password_variable(user)


DEPLOY_HEADER = f"""\
# The platform's NATS users: one per service, each allowed only the subjects it uses, and the
# operator (the NATS CLI), allowed everything. Included by nats.conf and cluster.conf.
#
# Generated from libs/src/launchdeck/libs/nats_access.py — do not edit by hand; regenerate with
#   python -m launchdeck.libs.nats_access > deploy/nats/authorization.conf
# (a test fails while this file differs from the table). docs/nats.md explains each permission.
#
# The passwords come from the server's environment, one variable per user (nats-server refuses
# to start without one):
{"".join(f"#   {password_variable(user)}{chr(10)}" for user in USERS)}\
# nats-server reads such a value as configuration: start each password with a letter
# (e.g. ld$(openssl rand -hex 24)), or one made of digits is taken for a number.
"""


def deploy_config() -> str:
    """`deploy/nats/authorization.conf`: the `authorization` block with every password read from
    the server's environment (`variable_password`)."""
    return DEPLOY_HEADER + authorization_config(variable_password)


def main() -> None:
    """Print `deploy/nats/authorization.conf`."""
    sys.stdout.write(deploy_config())


if __name__ == "__main__":
    main()
