"""Projects: create (with a fresh webhook secret), resolve by id or name, update, delete."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from launchdeck.contracts.api import ProjectCreate, ProjectUpdate
from launchdeck.contracts.messages import UndeployRequested
from launchdeck.contracts.subjects import SUBJECT_UNDEPLOY_JOBS
from launchdeck.control_api.domain.deployments import redeploy_active
from launchdeck.control_api.domain.errors import Conflict, Invalid, NotFound
from launchdeck.control_api.store import projects as store
from launchdeck.control_api.store.records import Project
from launchdeck.libs import outbox


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


async def create_project(conn: Any, request: ProjectCreate) -> Project:
    try:
        return await store.insert(
            conn,
            project_id=uuid.uuid4(),
            name=request.name,
            repo_url=request.repo_url,
            branch=request.branch,
            build_config=msgspec.to_builtins(request.build),
            domains=list(request.domains),
            webhook_secret=new_webhook_secret(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a project named {request.name!r} already exists") from None


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def resolve_project(conn: Any, id_or_name: str) -> Project:
    """The project whose id or name is `id_or_name` (the `{id}` of every project route)."""
    project_id = parse_uuid(id_or_name)
    if project_id is not None:
        project = await store.get(conn, project_id)
    else:
        project = await store.get_by_name(conn, id_or_name)
    if project is None:
        raise NotFound(f"no project {id_or_name!r}")
    return project


async def update_project(conn: Any, project: Project, request: ProjectUpdate) -> Project:
    if not isinstance(request.name, msgspec.UnsetType) and request.name != project.name:
        # Release directories and host names are derived from the name.
        raise Invalid.field("name", "cannot be changed; create a new project instead")
    changes: dict[str, Any] = {}
    if not isinstance(request.repo_url, msgspec.UnsetType):
        changes["repo_url"] = request.repo_url
    if not isinstance(request.branch, msgspec.UnsetType):
        changes["branch"] = request.branch
    if not isinstance(request.build, msgspec.UnsetType):
        changes["build_config"] = msgspec.to_builtins(request.build)
    if not isinstance(request.domains, msgspec.UnsetType):
        changes["domains"] = list(request.domains)
    if not changes:
        return project
    async with conn.transaction():
        updated = await store.update(conn, project.id, changes)
        if updated is None:
            raise NotFound(f"no project {project.name!r}")
        if updated.domains != project.domains:
            await redeploy_active(conn, updated)
    return updated


async def delete_project(conn: Any, project: Project) -> None:
    """Delete the project with its builds and deployments, and tell the deploy-engine (in the
    same transaction) to stop serving it and remove its releases."""
    async with conn.transaction():
        if not await store.delete(conn, project.id):
            raise NotFound(f"no project {project.name!r}")
        command = UndeployRequested(
            project_id=str(project.id), project_name=project.name, requested_at=datetime.now(UTC)
        )
        await outbox.enqueue(conn, SUBJECT_UNDEPLOY_JOBS, command)
