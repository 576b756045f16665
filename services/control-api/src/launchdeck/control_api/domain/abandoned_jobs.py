"""Jobs no worker will finish: what to record once JetStream stops redelivering a command, or
once a job has been silent past its deadline.

When a build or deploy command has used all its deliveries without an ack (the worker was
killed on its last attempt, or kept crashing), nobody reports the outcome. The control-api then
decides it (the logic half, no NATS here): a build or deployment that has not finished is marked
`failed` with a readable reason, through an ordinary status event so the usual consumer applies
it and project viewers see it; a build's log gets its eof so live viewers end.

JetStream says so once, with an advisory that nobody stores: one that fires while no control-api
is up is lost. So the same verdicts are also reached by deadline (`stuck_jobs`, run periodically
by `consumers.stuck_jobs`): a build whose status has not changed for longer than any attempt can
take (the operator's maximum time limit plus a grace: queueing, redelivery, NATS outages), or a
deployment pending or activating for longer than the deploy deadline, is failed the same way.
A worker that picks such a build up later finds its log ended and leaves it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from launchdeck.contracts.messages import (
    BUILD_REASON_CANCELLED,
    BuildRequested,
    BuildStatusChanged,
    DeployRequested,
)
from launchdeck.contracts.statuses import BUILD_FINISHED, DEPLOYMENT_SETTLED, BuildStatus
from launchdeck.control_api.domain.events import Event, deployment_event
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.store.records import Build, Deployment

BUILD_WORKER = "build-worker"
DEPLOY_ENGINE = "deploy-engine"


@dataclass(frozen=True)
class LogEof:
    """The eof batch a build's log must end with."""

    build_id: str
    status: BuildStatus
    attempt: int


@dataclass(frozen=True)
class Verdict:
    """What to publish for an abandoned job: a status event and/or a log's eof (or nothing)."""

    event: Event | None = None
    log_eof: LogEof | None = None
    # Why nothing is published (for logs and metrics), when `event` is None.
    reason: str | None = None

    @property
    def outcome(self) -> str:
        return "marked_failed" if self.event is not None else (self.reason or "nothing")


def abandoned_error(worker: str, deliveries: int) -> str:
    attempts = "attempt" if deliveries == 1 else "attempts"
    return f"the {worker} stopped responding after {deliveries} {attempts}: no result was reported"


def event_msg_id(event: Event) -> str:
    """The `Nats-Msg-Id` of the failure event: one per build or deployment, so replicas that
    both handle an abandoned job publish it once."""
    if isinstance(event, BuildStatusChanged):
        return f"build:{event.build_id}:abandoned"
    return f"deployment:{event.deployment_id}:abandoned"


async def judge_build(
    conn: Any, command: BuildRequested, deliveries: int, now: datetime
) -> Verdict:
    """The verdict on a build command that was delivered `deliveries` times and never acked."""
    build_id = parse_uuid(command.build_id)
    build = await builds.get(conn, build_id) if build_id else None
    if build is None:
        return Verdict(reason="unknown")
    if build.status in BUILD_FINISHED:
        # Its end was recorded, but the worker may have died before ending the log.
        eof = LogEof(str(build.id), build.status, build.attempt)
        return Verdict(log_eof=eof, reason="already_finished")
    return _build_failed(
        build, max(build.attempt, deliveries), abandoned_error(BUILD_WORKER, deliveries), now
    )


def _build_failed(build: Build, attempt: int, error: str, now: datetime) -> Verdict:
    """`build` failed with `error` (its step stays, saying where it stopped), and its log ends.
    A build whose cancel was asked for ends `cancelled` instead: that is what its user asked,
    and its worker, which would have confirmed it, is gone."""
    cancelled = build.cancel_requested_at is not None
    event = BuildStatusChanged(
        build_id=str(build.id),
        project_id=str(build.project_id),
        status="cancelled" if cancelled else "failed",
        attempt=attempt,
        error=f"Cancelled on request; {error}" if cancelled else error,
        reason=BUILD_REASON_CANCELLED if cancelled else None,
        at=now,
    )
    return Verdict(event=event, log_eof=LogEof(str(build.id), event.status, attempt))


async def judge_deployment(
    conn: Any, command: DeployRequested, deliveries: int, now: datetime
) -> Verdict:
    """The verdict on a deploy command that was delivered `deliveries` times and never acked."""
    deployment_id = parse_uuid(command.deployment_id)
    deployment = await deployments.get(conn, deployment_id) if deployment_id else None
    if deployment is None:
        return Verdict(reason="unknown")
    if deployment.status in DEPLOYMENT_SETTLED:
        return Verdict(reason="already_finished")
    error = abandoned_error(DEPLOY_ENGINE, deliveries)
    return Verdict(event=deployment_event(deployment, "failed", error=error, at=now))


def _duration(seconds: float) -> str:
    """`2h 05m`, `12m`, `40s`: how long, for people."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def stuck_build_error(build: Build, now: datetime) -> str:
    silent = _duration((now - build.updated_at).total_seconds())
    if build.status == "queued":
        return f"no build-worker started the build: it was queued for {silent}"
    return (
        f"the build-worker stopped reporting: no progress for {silent} while {build.status} "
        f"(attempt {build.attempt}), no result was reported"
    )


def stuck_deployment_error(deployment: Deployment, now: datetime) -> str:
    silent = _duration((now - deployment.updated_at).total_seconds())
    if deployment.status == "pending":
        return f"no deploy-engine started the deployment: it was pending for {silent}"
    return f"the deploy-engine stopped reporting: activating for {silent}, no result was reported"


def judge_stuck_build(build: Build, now: datetime) -> Verdict:
    """The verdict on an unfinished build silent past its deadline: failed, saying for how long
    and in which status (nothing when it finished meanwhile)."""
    if build.status in BUILD_FINISHED:
        return Verdict(reason="already_finished")
    return _build_failed(build, build.attempt, stuck_build_error(build, now), now)


def judge_stuck_deployment(deployment: Deployment, now: datetime) -> Verdict:
    """The verdict on a deployment pending or activating past its deadline: failed."""
    if deployment.status in DEPLOYMENT_SETTLED:
        return Verdict(reason="already_finished")
    error = stuck_deployment_error(deployment, now)
    return Verdict(event=deployment_event(deployment, "failed", error=error, at=now))


@dataclass(frozen=True)
class Deadlines:
    """How long a job may stay silent (no status change) before it is failed."""

    build_s: float  # the longest build time limit plus a grace (queueing, redelivery, outages)
    deployment_s: float


async def stuck_jobs(
    conn: Any, deadlines: Deadlines, now: datetime, *, limit: int
) -> list[Verdict]:
    """The verdicts on up to `limit` builds and `limit` deployments silent past their deadline,
    the longest silent first."""
    stuck_builds = await builds.silent_unfinished(conn, silent_s=deadlines.build_s, limit=limit)
    stuck_deployments = await deployments.silent_unsettled(
        conn, silent_s=deadlines.deployment_s, limit=limit
    )
    return [
        *(judge_stuck_build(b, now) for b in stuck_builds),
        *(judge_stuck_deployment(d, now) for d in stuck_deployments),
    ]
