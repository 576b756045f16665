"""Container apps at the API: a project's `resources` (stored, shown, replaced by PATCH, carried
on every deploy command the relay publishes), the `dockerfile`/`build_args` build settings
reaching the build command, and builds of kind `container` shown as such."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import AppResources, Artifact, BuildRequested, DeployRequested
from launchdeck.contracts.subjects import (
    STREAM_BUILDS,
    STREAM_DEPLOYS,
    SUBJECT_BUILD_JOBS,
    SUBJECT_DEPLOY_JOBS,
)
from launchdeck.control_api.store.records import Build
from launchdeck.libs.outbox import OutboxRelay
from tests.control_api.helpers import T0, activate, apply, build_event, get_build, get_deployment
from tests.control_api.support import Api, unique

PROBLEM = "application/problem+json"


async def _relayed(
    pool: asyncpg.Pool, js: JetStreamContext, stream: str, subject: str
) -> list[bytes]:
    """Relay the outbox (this module's database: only its own rows) and return what that put
    on `subject` of `stream`, in order."""
    before = (await js.stream_info(stream)).state.last_seq
    relay = OutboxRelay(pool, js)
    while await relay.relay_once():
        pass
    last = (await js.stream_info(stream)).state.last_seq
    payloads = []
    for seq in range(before + 1, last + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:  # taken by a consumer (work queue) or deleted
            continue
        if msg.subject == subject and msg.data is not None:
            payloads.append(msg.data)
    return payloads


async def deploy_command(
    pool: asyncpg.Pool, js: JetStreamContext, deployment_id: object
) -> DeployRequested:
    """The DeployRequested of `deployment_id` as the relay published it on the jobs stream."""
    commands = [
        decode(data, DeployRequested)
        for data in await _relayed(pool, js, STREAM_DEPLOYS, SUBJECT_DEPLOY_JOBS)
    ]
    [command] = [c for c in commands if c.deployment_id == str(deployment_id)]
    return command


async def build_command(pool: asyncpg.Pool, js: JetStreamContext, build_id: str) -> BuildRequested:
    commands = [
        decode(data, BuildRequested)
        for data in await _relayed(pool, js, STREAM_BUILDS, SUBJECT_BUILD_JOBS)
    ]
    [command] = [c for c in commands if c.build_id == build_id]
    return command


async def trigger(api: Api, project: str) -> str:
    reply = await api.call("POST", f"/api/v1/projects/{project}/builds", {})
    assert reply.status == 202, reply.body
    return str(reply.body["id"])


async def succeed_as(pool: asyncpg.Pool, build: Build, kind: str = "process") -> uuid.UUID:
    """Finish `build` with an artifact of `kind`; return the deployment that started."""
    artifact = Artifact(key=f"{build.id}.tar.gz", sha256="cd" * 32, size=4321, kind=kind)  # type: ignore[arg-type]
    outcome = await apply(pool, build_event(build, "succeeded", artifact=artifact))
    assert outcome.started_deployment_id is not None
    return outcome.started_deployment_id


async def test_resources_are_stored_shown_and_replaced_as_a_whole(api: Api) -> None:
    """Create with resources → the answer, GET and the list show them; PATCH replaces the
    object (a field left out goes back to the default), `{}` clears it; a PATCH of other
    fields keeps it."""
    name = unique("res")
    created = await api.create_project(name, resources={"memory_mb": 256, "cpus": 0.5})
    assert created["resources"] == {"memory_mb": 256, "cpus": 0.5}
    got = await api.call("GET", f"/api/v1/projects/{name}")
    assert got.body["resources"] == {"memory_mb": 256, "cpus": 0.5}
    listed = await api.call("GET", "/api/v1/projects", params={"limit": "100"})
    [mine] = [p for p in listed.body["items"] if p["name"] == name]
    assert mine["resources"] == {"memory_mb": 256, "cpus": 0.5}

    patched = await api.call("PATCH", f"/api/v1/projects/{name}", {"resources": {"cpus": 2}})
    assert patched.status == 200, patched.body
    assert patched.body["resources"] == {"cpus": 2.0}
    kept = await api.call("PATCH", f"/api/v1/projects/{name}", {"branch": "trunk"})
    assert kept.body["resources"] == {"cpus": 2.0}
    cleared = await api.call("PATCH", f"/api/v1/projects/{name}", {"resources": {}})
    assert cleared.body["resources"] == {}
    assert (await api.call("GET", f"/api/v1/projects/{name}")).body["resources"] == {}

    plain = await api.create_project(unique("nores"))
    assert plain["resources"] == {}


async def test_bad_resources_are_422_problems_and_change_nothing(api: Api) -> None:
    """Out-of-range, mistyped or unknown resource fields are 422 problems naming the field,
    on create and on PATCH; a refused PATCH leaves the project as it was."""
    name = unique("badres")
    await api.create_project(name, resources={"memory_mb": 512})
    cases = [
        ({"memory_mb": 1}, "resources.memory_mb", ">= 16"),
        ({"memory_mb": 2 * 1024 * 1024}, "resources.memory_mb", "<= 1048576"),
        ({"memory_mb": 64.5}, "resources.memory_mb", "Expected `int"),
        ({"memory_mb": "lots"}, "resources.memory_mb", "Expected `int"),
        ({"cpus": 0}, "resources.cpus", "> 0"),
        ({"cpus": -1}, "resources.cpus", "> 0"),
        ({"cpus": 4096}, "resources.cpus", "<= 1024"),
        ({"disk_mb": 10}, "resources.disk_mb", "not a known field"),
    ]
    for resources, field, message in cases:
        body = {"name": unique("r"), "repo_url": "https://x.invalid/r.git", "resources": resources}
        for method, path, payload in [
            ("POST", "/api/v1/projects", body),
            ("PATCH", f"/api/v1/projects/{name}", {"resources": resources}),
        ]:
            reply = await api.call(method, path, payload)
            assert reply.status == 422, (method, resources, reply.body)
            assert reply.content_type.startswith(PROBLEM)
            [error] = reply.body["errors"]
            assert error["field"] == field, (method, resources, error)
            assert message in error["message"], (method, resources, error)
    shown = await api.call("GET", f"/api/v1/projects/{name}")
    assert shown.body["resources"] == {"memory_mb": 512}


async def test_every_deploy_command_carries_the_projects_current_resources(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The deploy after a build carries the project's resources; after a PATCH, a redeploy,
    a promotion of a chosen build and a rollback carry the new ones; a project without
    resources sends the defaults (None: the engine decides)."""
    name = unique("resdeploy")
    await api.create_project(name, resources={"memory_mb": 128, "cpus": 0.25})
    first = await get_build(pool, uuid.UUID(await trigger(api, name)))
    first_deployment = await succeed_as(pool, first, "container")
    command = await deploy_command(pool, js, first_deployment)
    assert command.resources == AppResources(memory_mb=128, cpus=0.25)
    assert command.artifact.kind == "container"
    await activate(pool, await get_deployment(pool, first_deployment), T0)

    second = await get_build(pool, uuid.UUID(await trigger(api, name)))
    second_deployment = await succeed_as(pool, second, "container")
    await activate(pool, await get_deployment(pool, second_deployment), T0 + timedelta(minutes=1))
    await _relayed(pool, js, STREAM_DEPLOYS, SUBJECT_DEPLOY_JOBS)  # out of the way

    patched = await api.call(
        "PATCH", f"/api/v1/projects/{name}", {"resources": {"memory_mb": 1024}}
    )
    assert patched.status == 200, patched.body
    redeployed = await api.call("POST", f"/api/v1/projects/{name}/redeploy")
    assert redeployed.status == 202, redeployed.body
    command = await deploy_command(pool, js, redeployed.body["id"])
    assert command.build_id == str(second.id)
    assert command.resources == AppResources(memory_mb=1024)

    promoted = await api.call(
        "POST", f"/api/v1/projects/{name}/deployments", {"build_id": str(first.id)}
    )
    assert promoted.status == 202, promoted.body
    assert (await deploy_command(pool, js, promoted.body["id"])).resources == AppResources(
        memory_mb=1024
    )

    rolled = await api.call("POST", f"/api/v1/projects/{name}/rollback")
    assert rolled.status == 202, rolled.body
    command = await deploy_command(pool, js, rolled.body["id"])
    assert command.build_id == str(first.id)
    assert command.resources == AppResources(memory_mb=1024)

    plain = unique("plaindeploy")
    await api.create_project(plain)
    build = await get_build(pool, uuid.UUID(await trigger(api, plain)))
    command = await deploy_command(pool, js, await succeed_as(pool, build))
    assert command.resources == AppResources()


async def test_a_domain_change_redeploys_with_the_resources(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """A PATCH of domains re-activates the live build: that command has the resources too
    (those of the same PATCH when it changes both)."""
    name = unique("resdom")
    await api.create_project(name, resources={"cpus": 1.5})
    build = await get_build(pool, uuid.UUID(await trigger(api, name)))
    deployment = await succeed_as(pool, build, "container")
    await activate(pool, await get_deployment(pool, deployment), T0)
    await _relayed(pool, js, STREAM_DEPLOYS, SUBJECT_DEPLOY_JOBS)

    body = {"domains": [f"{name}.example.com"], "resources": {"cpus": 3, "memory_mb": 64}}
    assert (await api.call("PATCH", f"/api/v1/projects/{name}", body)).status == 200
    commands = [
        decode(data, DeployRequested)
        for data in await _relayed(pool, js, STREAM_DEPLOYS, SUBJECT_DEPLOY_JOBS)
    ]
    [command] = [c for c in commands if c.project_name == name]
    assert command.domains == [f"{name}.example.com"]
    assert command.resources == AppResources(memory_mb=64, cpus=3.0)


async def test_dockerfile_and_build_args_reach_the_build_command(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """`build.dockerfile` and `build.build_args` round-trip through create, GET and PATCH, and
    the BuildRequested the relay publishes carries them in its config; bad values are 422s."""
    name = unique("dockerfile")
    build = {"dockerfile": "docker/Dockerfile.web", "build_args": ["NODE_ENV", "API_URL"]}
    created = await api.create_project(name, build={**build, "root_dir": "app"})
    assert created["build"] == {**build, "root_dir": "app"}
    assert (await api.call("GET", f"/api/v1/projects/{name}")).body["build"] == created["build"]

    command = await build_command(pool, js, await trigger(api, name))
    assert command.config.dockerfile == "docker/Dockerfile.web"
    assert command.config.build_args == ["NODE_ENV", "API_URL"]
    assert command.config.root_dir == "app"

    patched = await api.call(
        "PATCH", f"/api/v1/projects/{name}", {"build": {"dockerfile": "Containerfile"}}
    )
    assert patched.status == 200, patched.body
    assert patched.body["build"] == {"dockerfile": "Containerfile"}  # replaced as a whole
    command = await build_command(pool, js, await trigger(api, name))
    assert command.config.dockerfile == "Containerfile"
    assert command.config.build_args is None

    for bad, field in [
        ({"dockerfile": "../Dockerfile"}, "build.dockerfile"),
        ({"dockerfile": "/etc/Dockerfile"}, "build.dockerfile"),
        ({"build_args": ["bad-name"]}, "build.build_args[0]"),
        ({"build_args": ["OK", "lower"]}, "build.build_args[1]"),
        ({"build_args": "NODE_ENV"}, "build.build_args"),
    ]:
        reply = await api.call("PATCH", f"/api/v1/projects/{name}", {"build": bad})
        assert reply.status == 422, (bad, reply.body)
        assert reply.body["errors"][0]["field"] == field, (bad, reply.body)


async def test_a_container_build_is_shown_as_one_and_its_deployment_gets_a_url(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A build whose artifact is of kind `container` shows that kind (detail and list), and
    its deployment shows its URL once active, as a process app's does."""
    name = unique("container")
    await api.create_project(name)
    build = await get_build(pool, uuid.UUID(await trigger(api, name)))
    deployment_id = await succeed_as(pool, build, "container")
    active = await activate(pool, await get_deployment(pool, deployment_id), T0)

    detail = await api.call("GET", f"/api/v1/builds/{build.id}")
    assert detail.body["artifact"]["kind"] == "container"
    listed = await api.call("GET", f"/api/v1/projects/{name}/builds")
    assert [b["artifact"]["kind"] for b in listed.body["items"]] == ["container"]
    shown = await api.call("GET", f"/api/v1/deployments/{deployment_id}")
    assert shown.body["status"] == "active"
    assert shown.body["url"] == active.url
    assert (await get_build(pool, build.id)).artifact == Artifact(
        key=f"{build.id}.tar.gz", sha256="cd" * 32, size=4321, kind="container"
    )
