"""Triggering builds (the build row and its BuildRequested command commit together) and
cancelling them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from launchdeck.contracts.api import BuildCreate
from launchdeck.contracts.messages import BUILD_REASON_CANCELLED, BuildRequested, BuildStatusChanged
from launchdeck.contracts.statuses import BUILD_FINISHED, Environment
from launchdeck.contracts.subjects import SUBJECT_BUILD_JOBS, build_event_subject
from launchdeck.control_api.domain.errors import Conflict, NotFound
from launchdeck.control_api.store import builds, projects
from launchdeck.control_api.store.records import Build, Project
from launchdeck.libs import outbox


def default_environment(project: Project, ref: str) -> Environment:
    """The project's branch deploys to production; any other ref to a preview."""
    return "production" if ref == project.branch else "preview"


async def trigger_build(
    conn: Any,
    project: Project,
    request: BuildCreate,
    *,
    trigger: str = "api",
    commit_sha: str | None = None,
    commit_message: str | None = None,
) -> Build:
    """Insert a queued build (next per-project number) and enqueue its BuildRequested.

    One transaction: either both exist or neither; the outbox row id (= the build id) becomes
    the command's Nats-Msg-Id, so a relay retry never starts a second build.
    `commit_sha` (a webhook's pushed commit): the worker checks out exactly that commit, while
    the build keeps `ref` (the branch or tag) as its name.
    """
    ref = request.ref or project.branch
    environment = request.environment or default_environment(project, ref)
    async with conn.transaction():
        number = await projects.take_build_number(conn, project.id)
        if number is None:  # deleted since it was resolved
            raise NotFound(f"no project {project.name!r}")
        build = await builds.insert(
            conn,
            build_id=uuid.uuid4(),
            project_id=project.id,
            number=number,
            ref=ref,
            trigger=trigger,
            deploy=request.deploy,
            environment=environment,
            commit_sha=commit_sha,
            commit_message=commit_message,
        )
        command = BuildRequested(
            build_id=str(build.id),
            project_id=str(project.id),
            project_name=project.name,
            number=build.number,
            repo_url=project.repo_url,
            ref=commit_sha or ref,
            config=project.config,
            requested_at=datetime.now(UTC),
            environment=environment,
        )
        await outbox.enqueue(conn, SUBJECT_BUILD_JOBS, command, msg_id=build.id)
    return build


# The `error` of a build cancelled while queued (the worker says `Cancelled on request` of one
# it stopped).
CANCELLED_QUEUED_ERROR = "Cancelled on request before it started"


@dataclass(frozen=True)
class Cancel:
    """What `cancel_build` did: `build` as it is now; `ended` when it was queued and is
    `cancelled` already (its log is to be ended), else it runs and its worker stops it."""

    build: Build
    ended: bool


def finished_conflict(build: Build) -> Conflict:
    return Conflict(f"build #{build.number} has already finished: {build.status}")


async def cancel_build(conn: Any, build_id: uuid.UUID, *, now: datetime) -> Cancel:
    """Cancel a build that has not finished (Conflict when it has).

    A queued build — no worker has reported starting it — is `cancelled` at once, and the
    event saying so goes to the outbox (project viewers see it; the events consumer finds the
    build finished already and leaves it). A running build only records when its cancel was
    asked for: its worker stops it and reports `cancelled` (or, if it finished first, what it
    finished as). The caller has written the build's cancel mark before, so a worker that
    picks up the job later drops it (docs/architecture.md, "Cancelling a build").
    """
    async with conn.transaction():
        build = await builds.get(conn, build_id, for_update=True)
        if build is None:
            raise NotFound(f"no build {str(build_id)!r}")
        if build.status in BUILD_FINISHED:
            raise finished_conflict(build)
        if build.status != "queued":
            return Cancel(await builds.request_cancel(conn, build.id, at=now), ended=False)
        cancelled = await builds.cancel_queued(conn, build.id, error=CANCELLED_QUEUED_ERROR, at=now)
        event = BuildStatusChanged(
            build_id=str(build.id),
            project_id=str(build.project_id),
            status="cancelled",
            attempt=build.attempt,
            error=CANCELLED_QUEUED_ERROR,
            reason=BUILD_REASON_CANCELLED,
            at=now,
        )
        subject = build_event_subject(str(build.project_id), str(build.id))
        await outbox.enqueue(conn, subject, event)
    return Cancel(cancelled, ended=True)
