"""Triggering builds: the build row and its BuildRequested command commit together."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from launchdeck.contracts.api import BuildCreate
from launchdeck.contracts.messages import BuildRequested
from launchdeck.contracts.statuses import Environment
from launchdeck.contracts.subjects import SUBJECT_BUILD_JOBS
from launchdeck.control_api.domain.errors import NotFound
from launchdeck.control_api.store import builds, projects
from launchdeck.control_api.store.records import Build, Project
from launchdeck.libs import outbox


def default_environment(project: Project, ref: str) -> Environment:
    """The project's branch deploys to production; any other ref to a preview."""
    return "production" if ref == project.branch else "preview"


async def trigger_build(
    conn: Any, project: Project, request: BuildCreate, *, trigger: str = "api"
) -> Build:
    """Insert a queued build (next per-project number) and enqueue its BuildRequested.

    One transaction: either both exist or neither; the outbox row id (= the build id) becomes
    the command's Nats-Msg-Id, so a relay retry never starts a second build.
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
        )
        command = BuildRequested(
            build_id=str(build.id),
            project_id=str(project.id),
            project_name=project.name,
            number=build.number,
            repo_url=project.repo_url,
            ref=ref,
            config=project.config,
            requested_at=datetime.now(UTC),
            environment=environment,
        )
        await outbox.enqueue(conn, SUBJECT_BUILD_JOBS, command, msg_id=build.id)
    return build
