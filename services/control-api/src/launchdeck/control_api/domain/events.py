"""Applying status events to Postgres: the logic half of the events consumer (no NATS here).

Each event is applied in one transaction together with its inbox row (`processed_events`), so a
redelivered event changes nothing. Events may arrive late or out of order (a retried publish, a
redelivery after a nak): a build never leaves a terminal status and never moves back within the
same attempt; a deployment never leaves `failed`, `superseded` or `rolled_back`.

A deployment is live in its environment while `active`, and still while `unhealthy` (its app
keeps crashing; the deploy-engine keeps it routed and keeps restarting it): the two go back and
forth without anything else changing. The deployment that becomes live (either way) retires the
one live before it, which is superseded or rolled back, so there is one live deployment per
project and environment (PostgreSQL's unique index says so too).

The inbox knows an event by what identifies it, not by where it sits in the stream: stream
sequences start again at 1 when `EVENTS` is recreated (NATS lost its store, an operator deleted
it), and an inbox keyed by them would take every new event for one it has already applied. Every
publisher of `ld.events.>` sets a `Nats-Msg-Id` (the build-worker `<build>:<attempt>:<status>`,
the deploy-engine `<deployment>:<status>` and `<run>:<status>`, the outbox relay its row id, the
abandoned-jobs watcher `build:<id>:abandoned` or `deployment:<id>:abandoned`), the same id the
stream deduplicates by, so it is the key; an event without one (a hand-made `nats pub`) is known
by its sequence together with the time the stream stored it, which a redelivery repeats and a
recreated stream does not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from launchdeck.contracts.messages import (
    BuildStatusChanged,
    DeploymentStatusChanged,
    RunStatusChanged,
)
from launchdeck.contracts.statuses import (
    BUILD_FINISHED,
    BUILD_RANK,
    DEPLOYMENT_FINAL,
    DEPLOYMENT_LIVE,
    DEPLOYMENT_RANK,
    DeploymentStatus,
)
from launchdeck.contracts.subjects import deployment_event_subject
from launchdeck.control_api.domain.deployments import start_deployment
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.domain.runs import apply_run_event
from launchdeck.control_api.store import builds, deployments, inbox, projects
from launchdeck.control_api.store.records import Build, Deployment
from launchdeck.libs import outbox
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# A build's or a deployment's event (what the abandoned-jobs watcher judges and publishes).
Event = BuildStatusChanged | DeploymentStatusChanged
# Every event the events consumer applies.
AnyEvent = Event | RunStatusChanged


@dataclass(frozen=True)
class EventOrigin:
    """Where an event came from, as the transport delivered it."""

    stream: str
    stream_seq: int
    msg_id: str | None = None  # the publisher's Nats-Msg-Id
    stored_at: datetime | None = None  # when the stream stored it

    @property
    def key(self) -> str:
        """The event's identity in the inbox (see the module doc)."""
        if self.msg_id:
            return f"id:{self.msg_id}"
        stored = self.stored_at.isoformat() if self.stored_at is not None else "unknown"
        return f"seq:{self.stream_seq}@{stored}"


@dataclass(frozen=True)
class EventOutcome:
    result: Literal["applied", "ignored", "duplicate"]
    # A build reached a terminal status: its log should now be persisted.
    finished_build_id: uuid.UUID | None = None
    # The deployment this event started (a succeeded build with deploy=true).
    started_deployment_id: uuid.UUID | None = None

    @property
    def applied(self) -> bool:
        return self.result == "applied"


_IGNORED = EventOutcome("ignored")


async def apply_event(pool: asyncpg.Pool, origin: EventOrigin, event: AnyEvent) -> EventOutcome:
    """Apply `event` exactly once (once per `origin.key`)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await inbox.record(conn, origin.stream, origin.key, origin.stream_seq):
            return EventOutcome("duplicate")
        if isinstance(event, BuildStatusChanged):
            return await apply_build_event(conn, event)
        if isinstance(event, RunStatusChanged):  # domain.runs: ordered like a build's
            return EventOutcome("applied" if await apply_run_event(conn, event) else "ignored")
        return await apply_deployment_event(conn, event)


def _is_stale(build: Build, event: BuildStatusChanged) -> str | None:
    """Why the event must not change the build, or None."""
    if build.status in BUILD_FINISHED:
        return "build already finished"
    if event.attempt < build.attempt:
        return "event of an earlier attempt"
    if event.attempt == build.attempt and BUILD_RANK[event.status] < BUILD_RANK[build.status]:
        return "event older than the build's status"
    return None


async def apply_build_event(conn: Any, event: BuildStatusChanged) -> EventOutcome:
    build_id = parse_uuid(event.build_id)
    build = await builds.get(conn, build_id, for_update=True) if build_id else None
    if build is None:
        log.warning("event_for_unknown_build", build_id=event.build_id, status=event.status)
        return _IGNORED
    if reason := _is_stale(build, event):
        log.info(
            "build_event_ignored",
            build_id=event.build_id,
            status=event.status,
            current=build.status,
            reason=reason,
        )
        return _IGNORED
    terminal = event.status in BUILD_FINISHED
    updated = await builds.apply_status(
        conn,
        build.id,
        status=event.status,
        step=event.step,
        attempt=event.attempt,
        error=event.error,
        commit_sha=event.commit_sha,
        commit_message=event.commit_message,
        artifact=event.artifact,
        started_at=event.at if event.status != "queued" else None,
        finished_at=event.at if terminal else None,
        reason=event.reason if terminal else None,
    )
    deployment_id = None
    if updated.status == "succeeded" and updated.deploy:
        deployment_id = await _deploy_succeeded_build(conn, updated)
    return EventOutcome(
        "applied",
        finished_build_id=updated.id if terminal else None,
        started_deployment_id=deployment_id,
    )


async def _deploy_succeeded_build(conn: Any, build: Build) -> uuid.UUID | None:
    if build.artifact is None:
        log.error("build_succeeded_without_artifact", build_id=str(build.id))
        return None
    project = await projects.get(conn, build.project_id)
    if project is None:
        return None
    if build.environment == "production":
        # Builds of one project may finish out of order (several workers): an older commit
        # finishing last must not take production back from a newer one.
        await projects.lock(conn, project.id)
        newest = await deployments.newest_live_build(conn, project.id, "production")
        if newest is not None and newest > build.number:
            return await _superseded_before_deploying(conn, build, newest)
    deployment = await start_deployment(conn, project, build, build.environment, trigger="build")
    # The build points at its deployment at once, so a client can follow it while it activates.
    await builds.set_deployment(conn, build.id, deployment.id)
    log.info("deployment_started", build_id=str(build.id), deployment_id=str(deployment.id))
    return deployment.id


async def _superseded_before_deploying(conn: Any, build: Build, newer: int) -> uuid.UUID:
    """Record the build's deployment as superseded without deploying it, and say so on the
    events stream (the deploy-engine never hears of it)."""
    reason = f"not deployed: build #{newer}, which is newer, is already live or deploying"
    deployment = await deployments.insert(
        conn,
        deployment_id=uuid.uuid4(),
        project_id=build.project_id,
        build_id=build.id,
        environment="production",
        trigger="build",
    )
    await deployments.apply_status(
        conn, deployment.id, status="superseded", url=None, error=reason, activated_at=None
    )
    await builds.set_deployment(conn, build.id, deployment.id)
    event = deployment_event(deployment, "superseded", error=reason, at=datetime.now(UTC))
    subject = deployment_event_subject(str(build.project_id), str(deployment.id))
    await outbox.enqueue(conn, subject, event)
    log.info("deployment_skipped_stale", build_id=str(build.id), newer_build=newer)
    return deployment.id


def deployment_event(
    deployment: Deployment, status: DeploymentStatus, *, error: str | None, at: datetime
) -> DeploymentStatusChanged:
    """The event announcing that the control-api itself moved `deployment` to `status`."""
    return DeploymentStatusChanged(
        deployment_id=str(deployment.id),
        project_id=str(deployment.project_id),
        build_id=str(deployment.build_id),
        environment=deployment.environment,
        status=status,
        error=error,
        at=at,
    )


async def apply_deployment_event(conn: Any, event: DeploymentStatusChanged) -> EventOutcome:
    deployment_id = parse_uuid(event.deployment_id)
    deployment = (
        await deployments.get(conn, deployment_id, for_update=True) if deployment_id else None
    )
    if deployment is None:
        log.warning(
            "event_for_unknown_deployment", deployment_id=event.deployment_id, status=event.status
        )
        return _IGNORED
    if (
        deployment.status in DEPLOYMENT_FINAL
        or DEPLOYMENT_RANK[event.status] < DEPLOYMENT_RANK[deployment.status]
    ):
        log.info(
            "deployment_event_ignored",
            deployment_id=event.deployment_id,
            status=event.status,
            current=deployment.status,
        )
        return _IGNORED
    # `active` ↔ `unhealthy` is the same live deployment changing health: nothing else moves.
    becomes_live = event.status in DEPLOYMENT_LIVE and deployment.status not in DEPLOYMENT_LIVE
    previous_id = await _retire_active(conn, deployment) if becomes_live else None
    await deployments.apply_status(
        conn,
        deployment.id,
        status=event.status,
        url=event.url,
        error=event.error,
        activated_at=event.at if event.status in DEPLOYMENT_LIVE else None,
        previous_deployment_id=previous_id,
        clear_error=event.status == "active" and deployment.status == "unhealthy",
    )
    if becomes_live:
        await builds.set_deployment(conn, deployment.build_id, deployment.id)
    return EventOutcome("applied")


async def _retire_active(conn: Any, incoming: Deployment) -> uuid.UUID | None:
    """The live deployment (active or unhealthy) `incoming` replaces becomes superseded, or
    rolled_back when `incoming` goes back to an older build. Returns its id (recorded as
    `previous_deployment_id`)."""
    current = await deployments.active(
        conn, incoming.project_id, incoming.environment, for_update=True
    )
    if current is None or current.id == incoming.id:
        return None
    rolled_back = incoming.trigger == "rollback" or await _is_older_build(
        conn, incoming.build_id, current.build_id
    )
    await deployments.apply_status(
        conn,
        current.id,
        status="rolled_back" if rolled_back else "superseded",
        url=None,
        error=None,
        activated_at=None,
    )
    return current.id


async def _is_older_build(conn: Any, build_id: uuid.UUID, than_build_id: uuid.UUID) -> bool:
    if build_id == than_build_id:
        return False
    build = await builds.get(conn, build_id)
    other = await builds.get(conn, than_build_id)
    return build is not None and other is not None and build.number < other.number
