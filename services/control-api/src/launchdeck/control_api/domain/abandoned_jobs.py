"""Jobs no worker will finish: what to record once JetStream stops redelivering a command.

When a build or deploy command has used all its deliveries without an ack (the worker was
killed on its last attempt, or kept crashing), nobody reports the outcome. The control-api then
decides it (the logic half, no NATS here): a build or deployment that has not finished is marked
`failed` with a readable reason, through an ordinary status event so the usual consumer applies
it and project viewers see it; a build's log gets its eof so live viewers end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from launchdeck.contracts.messages import BuildRequested, BuildStatusChanged, DeployRequested
from launchdeck.contracts.statuses import BUILD_FINISHED, DEPLOYMENT_SETTLED, BuildStatus
from launchdeck.control_api.domain.events import Event, deployment_event
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import builds, deployments

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
    attempt = max(build.attempt, deliveries)
    event = BuildStatusChanged(
        build_id=str(build.id),
        project_id=str(build.project_id),
        status="failed",
        attempt=attempt,
        error=abandoned_error(BUILD_WORKER, deliveries),
        at=now,
    )
    return Verdict(event=event, log_eof=LogEof(str(build.id), "failed", attempt))


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
