"""JetStream provisioning (SPEC §1.1): the streams, object stores and KV buckets the platform uses,
created or checked by every service at every start-up.

What is missing is created with the replicas asked for (`choose_replicas`). What exists is
brought to what the platform needs and otherwise left alone — an operator may have edited it,
and a start-up must never undo that in passing:

- replicas are raised when more are asked for, never lowered (fewer copies is a decision for an
  operator, `nats stream edit --replicas`, not a side effect of a service restarting with the
  setting unset);
- subjects the platform publishes on are added; subjects it does not know are kept;
- retention and storage are never changed (JetStream refuses it in place, and it would change
  what the stored messages mean);
- limits (age, size, discard policy, duplicate window) that differ are kept.

Every difference is logged as one `jetstream_stream_differs` warning per stream, saying what is
changed, what is kept and why. An update sends the stream's own configuration back with only
those changes, so nothing it holds — even fields this client does not know — is reset.
Object stores and KV buckets are streams (`OBJ_<bucket>`, `KV_<bucket>`) laid out by nats-py:
only their replicas are reconciled.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from launchdeck.contracts import subjects as s
from launchdeck.libs.logging import get_logger
from launchdeck.libs.settings import REPLICAS_VARIABLE

log = get_logger(__name__)

DAY = 24 * 3600.0
# Commands are deduplicated by Nats-Msg-Id within this window (the outbox retries inside it).
DUPLICATE_WINDOW_S = 2 * 3600.0
# How long a build's cancel mark (`cancellations` KV) is kept: longer than any build can wait
# in the queue or between redelivered attempts (the stuck-jobs sweep fails a silent build after
# the longest time limit plus a grace: 1 h 30 min by default), so a worker that picks up a
# cancelled build's job, however late, still finds it.
CANCELLATIONS_TTL_S = 7 * DAY
# Chosen from a cluster's size, replicas stop at 3: each one more costs a copy of every write,
# and 3 already ride out the loss of any one node.
MAX_AUTO_REPLICAS = 3


def stream_configs(
    *,
    logs_max_age_s: float = 7 * DAY,
    logs_max_bytes: int = 2 * 1024**3,
    replicas: int = 1,
) -> list[StreamConfig]:
    def work_queue(name: str, *subjects: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=list(subjects),
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        )

    return [
        work_queue(s.STREAM_BUILDS, s.SUBJECT_BUILD_JOBS),
        work_queue(
            s.STREAM_DEPLOYS, s.SUBJECT_DEPLOY_JOBS, s.SUBJECT_UNDEPLOY_JOBS, s.SUBJECT_RUN_JOBS
        ),
        work_queue(s.STREAM_GENERATIONS, s.SUBJECT_GENERATION_JOBS),
        StreamConfig(
            name=s.STREAM_EVENTS,
            subjects=[s.SUBJECT_EVENTS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=s.STREAM_LOGS,
            subjects=[s.SUBJECT_LOGS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=logs_max_age_s,
            max_bytes=logs_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
    ]


def kv_configs(replicas: int = 1) -> list[KeyValueConfig]:
    """The KV buckets: `leases` (leader leases) and `cancellations` (build id → the
    `BuildCancelRequested` of a cancelled build, for the worker that picks its job up later)."""
    return [
        KeyValueConfig(bucket=s.KV_LEASES, ttl=30.0, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(
            bucket=s.KV_CANCELLATIONS,
            ttl=CANCELLATIONS_TTL_S,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    ]


def platform_streams() -> tuple[str, ...]:
    """The name of every stream `provision` creates: the streams of `stream_configs`, and those
    under the object stores (`OBJ_<bucket>`) and the KV buckets (`KV_<bucket>`)."""
    return (
        *(str(config.name) for config in stream_configs()),
        f"OBJ_{s.OBJECT_STORE_ARTIFACTS}",
        *(f"KV_{kv.bucket}" for kv in kv_configs()),
    )


@dataclass(frozen=True)
class ReplicaChoice:
    count: int
    reason: str  # for the log: where the number came from


def choose_replicas(setting: int | None, server_info: Mapping[str, Any]) -> ReplicaChoice:
    """`setting` (`LAUNCHDECK_NATS_REPLICAS`) when given; else 1 on a single server, and on a
    cluster its size capped at `MAX_AUTO_REPLICAS`.

    The size is read from the INFO the connected server sent: `cluster` (its cluster's name,
    absent on a single server) and `connect_urls` (the client URLs of the nodes it has routes
    to, its own included). That is what the client is told anyway, needs no system account or
    monitoring port, and is exact once the cluster has formed — but a node that is down at that
    moment is not counted, and servers with `no_advertise` list none: production sets
    `LAUNCHDECK_NATS_REPLICAS` explicitly. (An under-count does no lasting harm: replicas are
    never lowered, and the next start-up with every node up raises them.)
    """
    if setting is not None:
        return ReplicaChoice(setting, REPLICAS_VARIABLE)
    cluster = server_info.get("cluster")
    if not cluster:
        return ReplicaChoice(1, "single server")
    nodes = len(set(server_info.get("connect_urls") or ()))
    count = max(1, min(MAX_AUTO_REPLICAS, nodes))
    return ReplicaChoice(count, f"cluster {cluster} of {nodes} reachable servers")


# Stream fields compared with the platform's configuration (what it sets on purpose).
STREAM_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "num_replicas",
    "max_age",
    "max_bytes",
    "discard",
    "duplicate_window",
)
BUCKET_FIELDS = ("num_replicas",)

_WHY = {
    "raised": f"more replicas asked for ({REPLICAS_VARIABLE} or the cluster's size)",
    "not_lowered": (
        "start-up never lowers replicas; lower them by hand (nats stream edit --replicas)"
    ),
    "subjects_added": "the platform publishes on these subjects",
    "subjects_kept": "start-up never removes a subject",
    "fixed": "JetStream cannot change it in place; it would change what the stored messages mean",
    "limits": "an operator's edit is kept; change it with nats stream edit",
}


@dataclass(frozen=True)
class Reconciliation:
    """What to do with an existing stream: `update` is its whole configuration with the changes
    applied (None: leave it as it is); `changing` and `keeping` are the differences, for the log:
    field → `{"stream": its value, "platform": ours, "why": …}`."""

    update: dict[str, Any] | None
    changing: dict[str, dict[str, Any]]
    keeping: dict[str, dict[str, Any]]


def _plain(value: Any) -> Any:
    """A value as the JetStream API spells it in JSON (enums as their strings)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def reconcile(
    existing: Mapping[str, Any], wanted: StreamConfig, fields: Sequence[str]
) -> Reconciliation:
    """Compare `existing` (the stream's configuration as the server reports it, JSON) with the
    platform's `wanted`, on `fields` (those `wanted` does not set are not compared), following
    the rules of this module's docstring."""
    ours = {k: _plain(v) for k, v in wanted.as_dict().items() if k in fields}
    update = dict(existing)
    changing: dict[str, dict[str, Any]] = {}
    keeping: dict[str, dict[str, Any]] = {}

    def differs(key: str) -> dict[str, Any]:
        return {"stream": existing.get(key), "platform": ours[key]}

    for key in ours:
        if key == "subjects":
            theirs = list(existing.get("subjects") or [])
            missing = [x for x in ours[key] if x not in theirs]
            extra = [x for x in theirs if x not in ours[key]]
            if missing:
                update["subjects"] = theirs + missing
                changing[key] = {**differs(key), "adding": missing, "why": _WHY["subjects_added"]}
            if extra:
                keeping[key] = {**differs(key), "keeping": extra, "why": _WHY["subjects_kept"]}
        elif existing.get(key) == ours[key]:
            continue
        elif key == "num_replicas":
            if int(existing.get(key) or 1) < ours[key]:
                update[key] = ours[key]
                changing[key] = {**differs(key), "why": _WHY["raised"]}
            else:
                keeping[key] = {**differs(key), "why": _WHY["not_lowered"]}
        elif key in ("retention", "storage"):
            keeping[key] = {**differs(key), "why": _WHY["fixed"]}
        else:
            keeping[key] = {**differs(key), "why": _WHY["limits"]}
    return Reconciliation(update if changing else None, changing, keeping)


async def _api(js: JetStreamContext, action: str, payload: bytes = b"") -> dict[str, Any]:
    """One JetStream API call (`STREAM.INFO.<name>`…), its JSON answer; an error answer raises
    nats-py's `APIError` subclass (`NotFoundError`…). The raw API keeps every field of a stream's
    configuration, even those nats-py's `StreamConfig` does not know."""
    response: dict[str, Any] = await js._api_request(
        f"{js._prefix}.{action}", payload, timeout=js._timeout
    )
    return response


async def ensure_stream(
    js: JetStreamContext,
    wanted: StreamConfig,
    create: Callable[[], Awaitable[object]],
    fields: Sequence[str] = STREAM_FIELDS,
) -> str:
    """Create stream `wanted.name` with `create()` when missing, else reconcile it (`reconcile`)
    and log its differences; return what happened: `created`, `updated` or `unchanged`."""
    name = wanted.name
    try:
        existing = (await _api(js, f"STREAM.INFO.{name}"))["config"]
    except NotFoundError:
        try:
            await create()
            return "created"
        except BadRequestError:
            # Created meanwhile, with another configuration, by a service starting at the same
            # time (each checks, then creates): reconcile with what it made.
            existing = (await _api(js, f"STREAM.INFO.{name}"))["config"]
    plan = reconcile(existing, wanted, fields)
    if plan.changing or plan.keeping:
        log.warning(
            "jetstream_stream_differs", stream=name, changing=plan.changing, keeping=plan.keeping
        )
    if plan.update is None:
        return "unchanged"
    await _api(js, f"STREAM.UPDATE.{name}", json.dumps(plan.update).encode())
    return "updated"


def server_info(js: JetStreamContext) -> Mapping[str, Any]:
    """The INFO the server `js` is connected to sent (nats-py keeps it, privately)."""
    info: Mapping[str, Any] = js._nc._server_info
    return info


async def provision(js: JetStreamContext, replicas: int | None = None) -> ReplicaChoice:
    """Create or reconcile every stream, object store and KV bucket the platform uses, with
    `replicas` copies (None: chosen by `choose_replicas`); return the choice."""
    choice = choose_replicas(replicas, server_info(js))
    count = choice.count
    outcomes: dict[str, list[str]] = {}

    async def ensure(
        wanted: StreamConfig, create: Callable[[], Awaitable[object]], fields: Sequence[str]
    ) -> None:
        outcome = await ensure_stream(js, wanted, create, fields)
        outcomes.setdefault(outcome, []).append(str(wanted.name))

    for config in stream_configs(replicas=count):
        await ensure(config, partial(js.add_stream, config), STREAM_FIELDS)
    for bucket in (s.OBJECT_STORE_ARTIFACTS,):
        store = ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE, replicas=count)
        await ensure(
            StreamConfig(name=f"OBJ_{bucket}", num_replicas=count),
            partial(js.create_object_store, bucket, config=store),
            BUCKET_FIELDS,
        )
    for kv in kv_configs(count):
        await ensure(
            StreamConfig(name=f"KV_{kv.bucket}", num_replicas=count),
            partial(js.create_key_value, config=kv),
            BUCKET_FIELDS,
        )
    log.info(
        "jetstream_provisioned",
        replicas=count,
        replicas_from=choice.reason,
        **{outcome: names for outcome, names in sorted(outcomes.items()) if outcome != "unchanged"},
    )
    return choice


class StreamsMissing(Exception):
    """Streams a service uses do not exist (yet): the control-api creates them."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"{', '.join(missing)} not created yet (the control-api creates them)")
        self.missing = tuple(missing)


async def check_streams(js: JetStreamContext, streams: Sequence[str]) -> None:
    """Raise `StreamsMissing` naming those of `streams` that do not exist; nats-py's errors
    (no reply in time, no responders: JetStream not up yet) as they come."""
    missing = []
    for name in streams:
        try:
            await _api(js, f"STREAM.INFO.{name}")
        except NotFoundError:
            missing.append(name)
    if missing:
        raise StreamsMissing(missing)
