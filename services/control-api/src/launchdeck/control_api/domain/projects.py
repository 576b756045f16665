"""Projects: create (with a fresh webhook secret), resolve by id or name, update, delete."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from launchdeck.contracts.api import SLUG_PATTERN, ProjectCreate, ProjectUpdate
from launchdeck.contracts.messages import UndeployRequested
from launchdeck.contracts.subjects import SUBJECT_UNDEPLOY_JOBS
from launchdeck.control_api.domain.deployments import redeploy_active
from launchdeck.control_api.domain.domains import DomainPolicy, check_domains, claim_domains
from launchdeck.control_api.domain.errors import Conflict, Invalid, NotFound
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.domain.webhook_secrets import new_secret, seal
from launchdeck.control_api.store import projects as store
from launchdeck.control_api.store.records import Project
from launchdeck.libs import outbox

PROJECT_NAME = re.compile(SLUG_PATTERN)


@dataclass(frozen=True)
class CreatedProject:
    """A new project and its webhook secret: stored sealed, so this is the one time the
    plaintext is at hand (the creation answer shows it)."""

    project: Project
    webhook_secret: str = field(repr=False)


# `<build8>-<project>.<base domain>` is a preview's host: a project named like that would own
# the host of another project's previews (`0badc0de-shop` those of `shop` whose build id starts
# with 0badc0de).
_PREVIEW_LIKE_NAME = re.compile(r"[0-9a-f]{8}-.+")
PREVIEW_LIKE_NAME_MESSAGE = (
    "must not start with 8 hexadecimal digits and '-': <build>-<project> is how preview hosts "
    "are named"
)


async def create_project(
    conn: Any,
    request: ProjectCreate,
    *,
    keyring: KeyRing,
    policy: DomainPolicy,
    reveal_owner: bool,
) -> CreatedProject:
    """Create the project with its domains claimed and a new webhook secret (sealed under
    `keyring`), or nothing (Invalid, Conflict).
    `reveal_owner`: whether a Conflict over a domain may name the project that owns it."""
    if _PREVIEW_LIKE_NAME.fullmatch(request.name):
        raise Invalid.field("name", PREVIEW_LIKE_NAME_MESSAGE)
    domains = check_domains(policy, request.name, list(request.domains))
    project_id = uuid.uuid4()
    secret = new_secret()
    sealed = seal(keyring, project_id, secret)
    try:
        async with conn.transaction():
            project = await store.insert(
                conn,
                project_id=project_id,
                name=request.name,
                repo_url=request.repo_url,
                branch=request.branch,
                build_config=msgspec.to_builtins(request.build),
                domains=domains,
                secret_nonce=sealed.nonce,
                secret_ciphertext=sealed.ciphertext,
                secret_key_id=sealed.key_id,
                build_tags=request.build_tags,
                resources=msgspec.to_builtins(request.resources),
            )
            await claim_domains(conn, project.id, domains, reveal_owner=reveal_owner)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a project named {request.name!r} already exists") from None
    return CreatedProject(project=project, webhook_secret=secret)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def project_key(id_or_name: str) -> uuid.UUID | str | None:
    """What the `{id}` of a project route names: an id, a name, or (None) nothing of ours."""
    project_id = parse_uuid(id_or_name)
    if project_id is not None:
        return project_id
    # Anything else is no name of ours (and a NUL would not even reach Postgres).
    return id_or_name if PROJECT_NAME.fullmatch(id_or_name) else None


async def resolve_project(conn: Any, id_or_name: str) -> Project:
    """The project whose id or name is `id_or_name` (the `{id}` of every project route)."""
    project_id = parse_uuid(id_or_name)
    project = None
    if project_id is not None:
        project = await store.get(conn, project_id)
    elif PROJECT_NAME.fullmatch(id_or_name):
        # Anything else is no name of ours (and a NUL would not even reach Postgres).
        project = await store.get_by_name(conn, id_or_name)
    if project is None:
        raise NotFound(f"no project {id_or_name!r}")
    return project


async def update_project(
    conn: Any,
    project: Project,
    request: ProjectUpdate,
    *,
    policy: DomainPolicy,
    reveal_owner: bool,
) -> Project:
    """Apply the fields present; new domains go through the same checks as at creation."""
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
        changes["domains"] = check_domains(policy, project.name, list(request.domains))
    if not isinstance(request.build_tags, msgspec.UnsetType):
        changes["build_tags"] = request.build_tags
    if not isinstance(request.resources, msgspec.UnsetType):
        # Replaced as a whole; the next deployment (a redeploy, a build) applies it.
        changes["resources"] = msgspec.to_builtins(request.resources)
    if not changes:
        return project
    async with conn.transaction():
        updated = await store.update(conn, project.id, changes)
        if updated is None:
            raise NotFound(f"no project {project.name!r}")
        if "domains" in changes:
            await claim_domains(conn, project.id, changes["domains"], reveal_owner=reveal_owner)
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
