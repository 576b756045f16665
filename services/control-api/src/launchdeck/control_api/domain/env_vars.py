"""Env vars of a project: set and unset them (sealed at rest, `sealing.py`), list their names,
hand the values of one build or one deployment to the service that runs it, and re-seal every
value under a new key.

The values leave the control-api by one road only: `values_for`, answering `ld.rpc.env` (core
NATS request/reply, stored nowhere). The HTTP API shows names and targets, never a value; no event
or command carries one. Changing a variable restarts nothing: a running app keeps the values it
started with until it is deployed again (`POST …/redeploy`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from launchdeck.contracts.api import (
    ENV_KEY_MAX_LENGTH,
    ENV_KEY_PATTERN,
    ENV_RESERVED_KEYS,
    ENV_RESERVED_PREFIX,
    ENV_TARGETS,
    EnvVarSet,
)
from launchdeck.contracts.messages import EnvRequest, EnvTarget
from launchdeck.contracts.statuses import BUILD_FINISHED, DEPLOYMENT_FINAL
from launchdeck.control_api.domain.errors import Invalid, NotFound
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.domain.sealing import KeyRing, Resealing, Sealed, UnreadableSecret
from launchdeck.control_api.store import builds, deployments
from launchdeck.control_api.store import env_vars as store
from launchdeck.control_api.store.records import EnvVar, Project

ENV_KEY = re.compile(ENV_KEY_PATTERN)
KEY_HINT = (
    "must be an environment variable name: capital letters, digits and '_', not starting with "
    f"a digit, at most {ENV_KEY_MAX_LENGTH} characters"
)

# Who runs what: only the build-worker is given a build's variables, only the deploy-engine a
# deployment's (the NATS users of `libs.nats_access`, known by the reply inbox of the request).
ASKER_OF_TARGET: dict[EnvTarget, str] = {
    "build": "build-worker",
    "preview": "deploy-engine",
    "production": "deploy-engine",
}


def check_key(key: str) -> str:
    """`key` if a project may set it; Invalid (field `key`) otherwise."""
    if len(key) > ENV_KEY_MAX_LENGTH or not ENV_KEY.fullmatch(key):
        raise Invalid.field("key", KEY_HINT)
    if key in ENV_RESERVED_KEYS or key.startswith(ENV_RESERVED_PREFIX):
        raise Invalid.field(
            "key",
            f"{key} is set by the platform itself (PORT and LAUNCHDECK_* are reserved)",
        )
    return key


def ordered_targets(targets: list[EnvTarget]) -> list[EnvTarget]:
    """Each target once, in the order build, preview, production."""
    return [t for t in ENV_TARGETS if t in targets]


async def set_var(
    conn: Any, keyring: KeyRing, project: Project, key: str, body: EnvVarSet
) -> EnvVar:
    """Create or replace `key`'s value and targets, sealed under the current key."""
    check_key(key)
    sealed = keyring.seal(project.id, key, body.value)
    try:
        return await store.upsert(
            conn,
            project_id=project.id,
            key=key,
            targets=list(ordered_targets(body.targets)),
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            key_id=sealed.key_id,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(f"no project {project.name!r}") from None


async def unset_var(conn: Any, project: Project, key: str) -> None:
    check_key(key)
    if not await store.delete(conn, project.id, key):
        raise NotFound(f"project {project.name!r} has no env var {key}")


def open_value(keyring: KeyRing, var: EnvVar) -> str:
    """The plaintext of a stored variable (UnreadableSecret when its key is not held)."""
    sealed = Sealed(nonce=var.nonce, ciphertext=var.ciphertext, key_id=var.key_id)
    return keyring.open(var.project_id, var.key, sealed)


# --- the values of one build or deployment (`ld.rpc.env`) -------------------------------------


class EnvRefused(Exception):
    """The request is not answered with values; the message says why (never a value)."""


async def values_for(
    conn: Any, keyring: KeyRing, request: EnvRequest, *, asker: str | None
) -> dict[str, str]:
    """The decrypted variables of `request.project_id` given to `request.target`, for a build
    or deployment that exists, is the project's, matches the target and is not finished, asked
    by the service that runs it (`asker`: the NATS user the reply goes to). EnvRefused else."""
    project_id = parse_uuid(request.project_id)
    if project_id is None:
        raise EnvRefused(f"project id {request.project_id!r} is not a UUID")
    wanted = ASKER_OF_TARGET[request.target]
    if asker != wanted:
        raise EnvRefused(
            f"{request.target} variables are given to the {wanted} only, and this answer would "
            f"go to {asker or 'an inbox of no platform service'}"
        )
    if request.target == "build":
        await _check_build(conn, project_id, request)
    else:
        await _check_deployment(conn, project_id, request)
    values = {}
    for var in await store.for_target(conn, project_id, request.target):
        try:
            values[var.key] = open_value(keyring, var)
        except UnreadableSecret as exc:
            raise EnvRefused(str(exc)) from None
    return values


async def _check_build(conn: Any, project_id: uuid.UUID, request: EnvRequest) -> None:
    if request.build_id is None or request.deployment_id is not None:
        raise EnvRefused("build variables are asked for with a build_id (and no deployment_id)")
    build_id = parse_uuid(request.build_id)
    build = await builds.get(conn, build_id) if build_id else None
    if build is None or build.project_id != project_id:
        raise EnvRefused(f"project {project_id} has no build {request.build_id}")
    if build.status in BUILD_FINISHED:
        raise EnvRefused(f"build #{build.number} is {build.status}")


async def _check_deployment(conn: Any, project_id: uuid.UUID, request: EnvRequest) -> None:
    if request.deployment_id is None or request.build_id is not None:
        raise EnvRefused(
            f"{request.target} variables are asked for with a deployment_id (and no build_id)"
        )
    deployment_id = parse_uuid(request.deployment_id)
    deployment = await deployments.get(conn, deployment_id) if deployment_id else None
    if deployment is None or deployment.project_id != project_id:
        raise EnvRefused(f"project {project_id} has no deployment {request.deployment_id}")
    if deployment.environment != request.target:
        raise EnvRefused(
            f"deployment {deployment.id} is a {deployment.environment} deployment, not "
            f"{request.target}"
        )
    if deployment.status in DEPLOYMENT_FINAL:
        raise EnvRefused(f"deployment {deployment.id} is {deployment.status}")


# --- key rotation ---------------------------------------------------------------------------


async def rotate(pool: asyncpg.Pool, keyring: KeyRing, *, batch: int = 200) -> Resealing:
    """Re-seal every value held under a previous key of `keyring` under its current key, a
    batch per transaction (rows locked meanwhile: a concurrent PUT waits, then writes under the
    current key). Values under a key the ring does not hold are left as they are and counted."""
    report = Resealing(key_id=keyring.current.key_id)
    old = [k.key_id for k in keyring.previous]
    after: tuple[uuid.UUID, str] | None = None
    while old:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.under_keys(conn, old, limit=batch, after=after)
            for var in rows:
                try:
                    value = open_value(keyring, var)
                except UnreadableSecret:
                    report.unreadable.append(f"{var.project_id}/{var.key}")
                    continue
                sealed = keyring.seal(var.project_id, var.key, value)
                await store.reseal(
                    conn,
                    var.project_id,
                    var.key,
                    nonce=sealed.nonce,
                    ciphertext=sealed.ciphertext,
                    key_id=sealed.key_id,
                )
                report.resealed += 1
        if len(rows) < batch:
            break
        after = (rows[-1].project_id, rows[-1].key)
    async with pool.acquire() as conn:
        report.by_key_id = await store.count_by_key_id(conn)
    return report
