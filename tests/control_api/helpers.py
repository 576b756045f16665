"""Helpers that move builds and deployments through their statuses by applying real events
(the same functions the events consumer calls), without NATS."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from launchdeck.contracts.api import BuildCreate, ProjectCreate
from launchdeck.contracts.messages import Artifact, BuildStatusChanged, DeploymentStatusChanged
from launchdeck.contracts.subjects import STREAM_EVENTS
from launchdeck.control_api.domain import projects as projects_service
from launchdeck.control_api.domain.builds import trigger_build
from launchdeck.control_api.domain.domains import DomainPolicy
from launchdeck.control_api.domain.events import AnyEvent, EventOrigin, EventOutcome, apply_event
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.store.records import Build, Deployment, Project
from tests.control_api.support import SECRET, unique

# Stream sequences far above what the session's EVENTS stream reaches.
_seq = itertools.count(10_000_000)


def next_seq() -> int:
    return next(_seq)


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def artifact(build: Build) -> Artifact:
    return Artifact(key=f"{build.id}.tar.gz", sha256="ab" * 32, size=1234)


async def apply(pool: asyncpg.Pool, event: AnyEvent, seq: int | None = None) -> EventOutcome:
    """Apply `event` as if delivered at stream sequence `seq` (without a message id: the inbox
    then knows it by that sequence)."""
    origin = EventOrigin(STREAM_EVENTS, next_seq() if seq is None else seq, stored_at=T0)
    return await apply_event(pool, origin, event)


def build_event(build: Build, status: str, **fields: Any) -> BuildStatusChanged:
    fields.setdefault("at", T0)
    return BuildStatusChanged(
        build_id=str(build.id), project_id=str(build.project_id), status=status, **fields
    )  # type: ignore[arg-type]


def deployment_event(deployment: Deployment, status: str, **fields: Any) -> DeploymentStatusChanged:
    fields.setdefault("at", T0)
    return DeploymentStatusChanged(
        deployment_id=str(deployment.id),
        project_id=str(deployment.project_id),
        build_id=str(deployment.build_id),
        environment=deployment.environment,
        status=status,  # type: ignore[arg-type]
        **fields,
    )


async def new_project(pool: asyncpg.Pool, keyring: KeyRing | None = None, **fields: Any) -> Project:
    """A project whose webhook secret is sealed under `keyring` (default: the test app's)."""
    name = unique("ev")
    request = ProjectCreate(name=name, repo_url=f"https://git.invalid/{name}", **fields)
    async with pool.acquire() as conn:
        created = await projects_service.create_project(
            conn,
            request,
            keyring=keyring or KeyRing.from_secrets(SECRET),
            policy=DomainPolicy(base_domain="localhost"),
            reveal_owner=True,
        )
    return created.project


async def new_build(pool: asyncpg.Pool, project: Project, **fields: Any) -> Build:
    async with pool.acquire() as conn:
        return await trigger_build(conn, project, BuildCreate(**fields))


async def get_build(pool: asyncpg.Pool, build_id: uuid.UUID) -> Build:
    async with pool.acquire() as conn:
        build = await builds.get(conn, build_id)
    assert build is not None
    return build


async def get_deployment(pool: asyncpg.Pool, deployment_id: uuid.UUID) -> Deployment:
    async with pool.acquire() as conn:
        deployment = await deployments.get(conn, deployment_id)
    assert deployment is not None
    return deployment


async def succeed(pool: asyncpg.Pool, build: Build) -> Deployment:
    """Run the build through to `succeeded`; return the deployment that created."""
    outcome = await apply(pool, build_event(build, "succeeded", artifact=artifact(build)))
    assert outcome.started_deployment_id is not None
    return await get_deployment(pool, outcome.started_deployment_id)


async def activate(pool: asyncpg.Pool, deployment: Deployment, at: datetime) -> Deployment:
    await apply(pool, deployment_event(deployment, "activating", at=at))
    url = f"http://p.localhost/{deployment.id}"
    outcome = await apply(pool, deployment_event(deployment, "active", url=url, at=at))
    assert outcome.applied
    return await get_deployment(pool, deployment.id)
