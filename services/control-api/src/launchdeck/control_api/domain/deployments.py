"""Deployments: start one (row + DeployRequested in one transaction), deploy a chosen build,
roll back to the previous successful one, redeploy the live one (the same build, the current
env vars)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from launchdeck.contracts.messages import DeployRequested
from launchdeck.contracts.statuses import Environment
from launchdeck.contracts.subjects import SUBJECT_DEPLOY_JOBS
from launchdeck.control_api.domain.errors import Conflict, Invalid
from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.store.records import Build, Deployment, DeploymentTrigger, Project
from launchdeck.libs import outbox


async def start_deployment(
    conn: Any,
    project: Project,
    build: Build,
    environment: Environment,
    *,
    trigger: DeploymentTrigger,
) -> Deployment:
    """Insert a pending deployment and enqueue its DeployRequested, in the caller's transaction."""
    artifact = build.artifact
    if artifact is None:
        raise Conflict(f"build #{build.number} has no artifact to deploy")
    deployment = await deployments.insert(
        conn,
        deployment_id=uuid.uuid4(),
        project_id=project.id,
        build_id=build.id,
        environment=environment,
        trigger=trigger,
    )
    command = DeployRequested(
        deployment_id=str(deployment.id),
        project_id=str(project.id),
        project_name=project.name,
        build_id=str(build.id),
        environment=environment,
        artifact=artifact,
        domains=list(project.domains),
        requested_at=datetime.now(UTC),
        commit_sha=build.commit_sha,
        # The project's limits as they are now: a redeploy after a change applies them.
        resources=project.app_resources,
    )
    await outbox.enqueue(conn, SUBJECT_DEPLOY_JOBS, command, msg_id=deployment.id)
    return deployment


async def deploy_build(
    conn: Any, project: Project, build_id: uuid.UUID, environment: Environment
) -> Deployment:
    """Activate an existing succeeded build of the project (promote a preview, or go back)."""
    async with conn.transaction():
        build = await builds.get(conn, build_id)
        if build is None or build.project_id != project.id:
            raise Invalid.field("build_id", f"project {project.name!r} has no such build")
        if build.status != "succeeded":
            raise Conflict(
                f"build #{build.number} is {build.status}; only a succeeded build can be deployed"
            )
        return await start_deployment(conn, project, build, environment, trigger="api")


async def redeploy_active(
    conn: Any,
    project: Project,
    environment: Environment = "production",
    *,
    trigger: DeploymentTrigger = "api",
) -> Deployment | None:
    """Activate the live build (active, or unhealthy) again as a new deployment — so a change of
    the project's domains reaches the edge now, or its app starts again with the current env
    vars; None when nothing is live. Call it inside a transaction."""
    current = await deployments.live(conn, project.id, environment)
    build = await builds.get(conn, current.build_id) if current else None
    if build is None or build.artifact is None:
        return None
    return await start_deployment(conn, project, build, environment, trigger=trigger)


async def redeploy(conn: Any, project: Project, environment: Environment) -> Deployment:
    """`POST …/redeploy`: the live build of `environment`, deployed again (no rebuild), so its
    app restarts with the project's current env vars. Conflict when nothing is live there."""
    async with conn.transaction():
        deployment = await redeploy_active(conn, project, environment, trigger="redeploy")
    if deployment is None:
        raise Conflict(
            f"project {project.name!r} has no live {environment} deployment to redeploy; "
            "deploy a build first"
        )
    return deployment


async def rollback(
    conn: Any, project: Project, environment: Environment = "production"
) -> Deployment:
    """Re-activate, as a new deployment, the build of the most recent successful deployment
    older than the active one. Rollbacks repeat backwards: a build that was rolled back away
    from is never a target again."""
    async with conn.transaction():
        current = await deployments.active(conn, project.id, environment)
        current_build = await builds.get(conn, current.build_id) if current else None
        target = await deployments.previous_successful(
            conn,
            project.id,
            environment,
            older_than_build=current_build.number if current_build else None,
        )
        if target is None:
            raise Conflict(
                f"project {project.name!r} has no earlier successful {environment} deployment "
                "to roll back to"
            )
        build = await builds.get(conn, target.build_id)
        if build is None:
            raise Conflict(f"the build of deployment {target.id} no longer exists")
        return await start_deployment(conn, project, build, environment, trigger="rollback")
