"""`ld.rpc.env`: the control-api hands the env vars of one build or deployment to the service that
runs it — and nothing to anyone else — over core NATS, with each service logged in as its own
NATS user (so the permission table is part of what is tested)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.api import EnvVarSet
from launchdeck.contracts.messages import EnvRequest, EnvTarget
from launchdeck.contracts.subjects import SUBJECT_ENV_REQUESTS
from launchdeck.control_api.domain import env_vars
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.store.records import Project
from launchdeck.libs.env_client import EnvRefused, EnvUnavailable, fetch_env
from launchdeck.libs.provisioning import stream_configs
from tests.control_api.helpers import (
    T0,
    activate,
    apply,
    build_event,
    new_build,
    new_project,
    succeed,
)
from tests.env_rpc import env_server, service_connection

RING = KeyRing.from_secrets("env-rpc-tests-" + uuid.uuid4().hex)
TOKEN = "tok-" + uuid.uuid4().hex


@pytest_asyncio.fixture(loop_scope="session")
async def served(pool: asyncpg.Pool, nats_url: str) -> AsyncIterator[None]:
    async with env_server(pool, nats_url, RING):
        yield


@pytest_asyncio.fixture(loop_scope="session")
async def build_worker_nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await service_connection(nats_url, "build-worker")
    yield nc
    await nc.close()


@pytest_asyncio.fixture(loop_scope="session")
async def deploy_engine_nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await service_connection(nats_url, "deploy-engine")
    yield nc
    await nc.close()


async def project_with_vars(pool: asyncpg.Pool) -> Project:
    """A project with one variable per target set, and one for all."""
    project = await new_project(pool)
    values: dict[str, list[EnvTarget]] = {
        "BUILD_ONLY": ["build"],
        "PREVIEW_ONLY": ["preview"],
        "PRODUCTION_ONLY": ["production"],
    }
    async with pool.acquire() as conn:
        for key, targets in values.items():
            body = EnvVarSet(value=f"{key.lower()}-{TOKEN}", targets=targets)
            await env_vars.set_var(conn, RING, project, key, body)
        await env_vars.set_var(conn, RING, project, "EVERYWHERE", EnvVarSet(value=TOKEN))
    return project


def build_request(project: Project, build_id: uuid.UUID) -> EnvRequest:
    return EnvRequest(project_id=str(project.id), target="build", build_id=str(build_id))


async def test_a_running_build_gets_its_build_vars(
    pool: asyncpg.Pool, served: None, build_worker_nc: Client
) -> None:
    """A queued or running build: the decrypted `build` variables, nothing of the others."""
    project = await project_with_vars(pool)
    build = await new_build(pool, project)
    values = await fetch_env(build_worker_nc, build_request(project, build.id))
    assert values == {"BUILD_ONLY": f"build_only-{TOKEN}", "EVERYWHERE": TOKEN}
    await apply(pool, build_event(build, "building", step="build"))
    assert await fetch_env(build_worker_nc, build_request(project, build.id)) == values


async def test_a_finished_build_is_refused(
    pool: asyncpg.Pool, served: None, build_worker_nc: Client
) -> None:
    """Once a build has finished its variables are no longer handed out."""
    project = await project_with_vars(pool)
    build = await new_build(pool, project)
    await apply(pool, build_event(build, "failed", error="boom"))
    with pytest.raises(EnvRefused, match=r"build #1 is failed") as refused:
        await fetch_env(build_worker_nc, build_request(project, build.id))
    assert TOKEN not in str(refused.value)


async def test_another_projects_build_or_a_missing_one_is_refused(
    pool: asyncpg.Pool, served: None, build_worker_nc: Client
) -> None:
    """A build asked for under another project's id (whose variables would then be sent) or
    that does not exist gets nothing."""
    project = await project_with_vars(pool)
    other = await project_with_vars(pool)
    build = await new_build(pool, project)
    for request in (
        build_request(other, build.id),
        build_request(project, uuid.uuid4()),
        EnvRequest(project_id="not-a-uuid", target="build", build_id=str(build.id)),
        EnvRequest(project_id=str(project.id), target="build"),
    ):
        with pytest.raises(EnvRefused):
            await fetch_env(build_worker_nc, request)


async def test_a_deployment_gets_the_vars_of_its_environment_only(
    pool: asyncpg.Pool, served: None, deploy_engine_nc: Client
) -> None:
    """The deploy-engine gets a production deployment's `production` variables — while it is
    pending and once active — and is refused them under another environment's target, and
    once the deployment is superseded."""
    project = await project_with_vars(pool)
    first = await succeed(pool, await new_build(pool, project))

    def asking(target: EnvTarget, deployment_id: uuid.UUID) -> EnvRequest:
        return EnvRequest(
            project_id=str(project.id), target=target, deployment_id=str(deployment_id)
        )

    production = {"PRODUCTION_ONLY": f"production_only-{TOKEN}", "EVERYWHERE": TOKEN}
    assert await fetch_env(deploy_engine_nc, asking("production", first.id)) == production
    await activate(pool, first, T0)
    assert await fetch_env(deploy_engine_nc, asking("production", first.id)) == production
    with pytest.raises(EnvRefused, match="is a production deployment, not preview"):
        await fetch_env(deploy_engine_nc, asking("preview", first.id))
    with pytest.raises(EnvRefused, match="with a deployment_id"):
        await fetch_env(
            deploy_engine_nc,
            EnvRequest(
                project_id=str(project.id), target="production", build_id=str(first.build_id)
            ),
        )

    second = await succeed(pool, await new_build(pool, project))
    await activate(pool, second, T0 + timedelta(minutes=1))
    with pytest.raises(EnvRefused, match="is superseded"):
        await fetch_env(deploy_engine_nc, asking("production", first.id))

    preview = await succeed(pool, await new_build(pool, project, ref="topic"))
    assert preview.environment == "preview"
    assert await fetch_env(deploy_engine_nc, asking("preview", preview.id)) == {
        "PREVIEW_ONLY": f"preview_only-{TOKEN}",
        "EVERYWHERE": TOKEN,
    }


async def test_values_go_only_to_the_service_that_runs_them(
    pool: asyncpg.Pool,
    served: None,
    build_worker_nc: Client,
    deploy_engine_nc: Client,
    nc: Client,
) -> None:
    """A build's variables are answered to the build-worker's inbox only, a deployment's to the
    deploy-engine's only: the build-worker's credentials (beside untrusted builds) cannot get
    production values, and an inbox of no platform service (an operator's `nats req`) gets
    nothing either."""
    project = await project_with_vars(pool)
    build = await new_build(pool, project)
    deployment = await succeed(pool, await new_build(pool, project))
    production = EnvRequest(
        project_id=str(project.id), target="production", deployment_id=str(deployment.id)
    )
    with pytest.raises(EnvRefused, match="given to the deploy-engine only"):
        await fetch_env(build_worker_nc, production)
    with pytest.raises(EnvRefused, match="given to the build-worker only"):
        await fetch_env(deploy_engine_nc, build_request(project, build.id))
    with pytest.raises(EnvRefused, match="no platform service"):
        await fetch_env(nc, build_request(project, build.id))  # the operator's test client


async def test_a_value_under_an_unknown_key_is_refused_not_skipped(
    pool: asyncpg.Pool, served: None, build_worker_nc: Client
) -> None:
    """A value the control-api cannot decrypt (sealed under a key it does not hold) refuses the
    request naming the variable and its key id: the build never runs without it."""
    project = await project_with_vars(pool)
    stranger = KeyRing.from_secrets("a key this control-api never had " + uuid.uuid4().hex)
    async with pool.acquire() as conn:
        await env_vars.set_var(
            conn, stranger, project, "FOREIGN", EnvVarSet(value="x" * 10, targets=["build"])
        )
    build = await new_build(pool, project)
    with pytest.raises(
        EnvRefused, match=f"FOREIGN is encrypted under key id {stranger.current.key_id}"
    ):
        await fetch_env(build_worker_nc, build_request(project, build.id))


async def test_nobody_answering_is_unavailable_after_the_wait(
    pool: asyncpg.Pool, build_worker_nc: Client
) -> None:
    """Without a control-api serving the subject, the asker gets `EnvUnavailable` once its wait
    is over (an infrastructure failure, retried), never an empty set of variables."""
    project = await project_with_vars(pool)
    build = await new_build(pool, project)
    with pytest.raises(EnvUnavailable, match="did not answer"):
        await fetch_env(build_worker_nc, build_request(project, build.id), wait_s=0.5)


async def test_no_stream_stores_env_requests_or_their_answers(js: JetStreamContext) -> None:
    """The request subject and the services' reply inboxes are in no stream the platform
    creates, so neither a request nor its answer (the values) is ever stored."""
    configs = stream_configs()
    subjects = [subject for config in configs for subject in config.subjects or []]
    assert subjects
    for subject in subjects:
        assert not _matches(subject, SUBJECT_ENV_REQUESTS), subject
        assert not subject.startswith(("_INBOX", ">", "*")), subject
    for info in await js.streams_info():
        for subject in info.config.subjects or []:
            assert not _matches(subject, SUBJECT_ENV_REQUESTS), (info.config.name, subject)


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (`*` one token, `>` the rest)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)
