"""Dockerfile apps built by the real build-worker against real NATS and a real container engine
(podman): the image built with the engine's output in the build log, saved as an OCI archive in
a `container` release, its build tag removed and its layers kept for the next build; build
arguments only for the variables marked in `build_args`, every build variable a build secret
that never reaches the image, its history or the log; a failing Dockerfile fails the build
with the engine's error. Needs podman (`make test-containers`)."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.container_engine import build_tag, cache_tag
from launchdeck.build_worker.handler import BuildWorker, env_from_control_api
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildRequested, EnvTarget, ReleaseManifest
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.libs import db
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_batches, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.build_worker.test_handler import fetch_artifact
from tests.env_rpc import env_server, registered_build, service_connection
from tests.support import GitRepoFactory

pytestmark = pytest.mark.containers

BUILD_TIMEOUT_S = 600
RING = KeyRing.from_secrets("container-build-tests-" + uuid.uuid4().hex)
SECRET_VALUE = "sk-container-" + uuid.uuid4().hex
PUBLIC_VALUE = "public-" + uuid.uuid4().hex[:8]
SERVER = """\
import os
from aiohttp import web

async def index(request):
    return web.Response(text="hello from a container")

app = web.Application()
app.add_routes([web.get("/", index)])
web.run_app(app, port=int(os.environ.get("PORT", "8080")))
"""
# `{token}` makes the first layer new on every run: the first build is a cold one.
APP_DOCKERFILE = """\
FROM {base}
RUN echo "cold build {token}"
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -q 'aiohttp>=3.10,<4'
WORKDIR /app
COPY server.py /app/server.py
EXPOSE 8080
CMD ["/venv/bin/python", "/app/server.py"]
"""
SECRETS_DOCKERFILE = """\
FROM {base}
ARG PUBLIC_NAME
ARG API_SECRET
RUN echo "public name is $PUBLIC_NAME" && echo "$PUBLIC_NAME" > /public.txt
RUN echo "secret as an argument: [${{API_SECRET:-unset}}]"
RUN --mount=type=secret,id=API_SECRET echo "secret is $(cat /run/secrets/API_SECRET)" \\
    && sha256sum /run/secrets/API_SECRET > /secret.sha256
CMD ["cat", "/public.txt"]
"""
VENV_STEP = re.compile(r"STEP \d+/\d+: RUN python3 -m venv")
FAILING_DOCKERFILE = """\
FROM {base}
RUN echo "about to fail"
RUN sh -c 'echo "the step fails" >&2; exit 3'
CMD ["true"]
"""


def engine_run(engine: str, *args: str) -> str:
    result = subprocess.run(
        [engine, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def release_files(data: bytes, dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}


def layer_contents(archive: Path) -> list[bytes]:
    """Every blob of an OCI archive, layers decompressed."""
    blobs: list[bytes] = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("blobs/"):
                continue
            f = tar.extractfile(member)
            assert f is not None
            data = f.read()
            blobs.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return blobs


def image_tags(engine: str, repository: str) -> list[str]:
    out = engine_run(engine, "images", "--format", "{{.Repository}}:{{.Tag}}")
    return [line for line in out.splitlines() if repository in line]


async def build(worker: BuildWorker, cmd: BuildRequested) -> None:
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK


@pytest.fixture
def built_projects(container_engine: str) -> Iterator[list[str]]:
    """Names of the projects a test builds: their images are removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        for tag in image_tags(container_engine, f"launchdeck-build/{name}:"):
            subprocess.run([container_engine, "rmi", tag], capture_output=True, check=False)


async def test_a_dockerfile_app_builds_into_a_container_release_and_its_layers_stay_cached(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    container_engine: str,
    base_image: str,
    tmp_path: Path,
    built_projects: list[str],
) -> None:
    """A small aiohttp server's Dockerfile: the build succeeds with the engine's steps in the
    log; the artifact is a `container` release holding release.json and image.tar, whose
    `podman load` gives the image the manifest names; the build tag is gone, the project's
    cache tag holds the image, and a second build of it uses the cached layers."""
    dockerfile = APP_DOCKERFILE.format(base=base_image, token=uuid.uuid4().hex)
    repo = make_git_repo({"Dockerfile": dockerfile, "server.py": SERVER})
    settings = make_settings(tmp_path / "builds", timeout_s=BUILD_TIMEOUT_S)
    worker = BuildWorker(js, settings)
    project = f"ctr-{uuid.uuid4().hex[:6]}"
    built_projects.append(project)
    cmd = msgspec.structs.replace(command(repo), project_name=project)

    await build(worker, cmd)

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    assert [e.status for e in events][:2] == ["cloning", "building"]
    artifact = events[-1].artifact
    assert artifact is not None
    assert artifact.kind == "container"
    assert artifact.start_command == "/venv/bin/python /app/server.py"
    assert artifact.processes == {"web": "/venv/bin/python /app/server.py"}
    text = [line.line for line in await log_lines(js, cmd.build_id)]
    assert any(line.startswith("▶ Detected Dockerfile") for line in text), text
    assert any("outside the build sandbox" in line for line in text)
    assert any(VENV_STEP.match(line) for line in text), text
    assert text[-2].startswith("✔ Image sha256:")
    assert text[-1].startswith("✔ Build succeeded")

    files = release_files(await fetch_artifact(js, artifact.key), tmp_path / "release")
    assert sorted(files) == [".launchdeck/image.tar", ".launchdeck/release.json"]
    manifest = msgspec.json.decode(
        files[".launchdeck/release.json"].read_bytes(), type=ReleaseManifest
    )
    assert manifest.kind == "container"
    assert manifest.health_path == "/"
    assert manifest.image is not None
    assert manifest.image.archive == ".launchdeck/image.tar"
    assert manifest.image.ports == [8080]
    assert manifest.image.command == ["/venv/bin/python", "/app/server.py"]
    assert manifest.image.id in text[-2]

    # The build's tag is gone, the project's cache tag holds the image: `podman load` of the
    # archive gives the same image id.
    tags = image_tags(container_engine, f"launchdeck-build/{project}")
    assert tags == [f"localhost/{cache_tag(project)}"], tags
    assert build_tag(project, cmd.build_id) not in "".join(tags)
    loaded = engine_run(container_engine, "load", "-i", str(files[".launchdeck/image.tar"]))
    loaded_id = engine_run(
        container_engine, "image", "inspect", "--format", "{{.Id}}", manifest.image.id
    ).strip()
    assert f"sha256:{loaded_id}" == manifest.image.id, loaded

    # The next build of the project reuses the layers (the pip install is not run again).
    again = msgspec.structs.replace(command(repo), project_name=project)
    await build(worker, again)
    events = await build_events(js, again.project_id, again.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    text = [line.line for line in await log_lines(js, again.build_id)]
    venv_step = text.index(next(line for line in text if VENV_STEP.match(line)))
    assert text[venv_step + 1].startswith("--> Using cache"), text[venv_step : venv_step + 3]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def worker_nc(nats_url: str) -> AsyncIterator[Client]:
    nc = await service_connection(nats_url, "build-worker")
    yield nc
    await nc.close()


async def test_build_args_only_when_marked_and_secrets_never_in_the_image(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nats_url: str,
    worker_nc: Client,
    make_git_repo: GitRepoFactory,
    container_engine: str,
    base_image: str,
    tmp_path: Path,
    built_projects: list[str],
) -> None:
    """PUBLIC_NAME, marked in build_args, reaches the Dockerfile as ARG; API_SECRET, not marked,
    is no ARG, is readable in `RUN --mount=type=secret` (its value shows as *** in the log)
    and is nowhere in the image: not in its history, config, env or any layer, nor unmasked
    in the log, the events or on the engine's command line."""
    repo = make_git_repo({"Dockerfile": SECRETS_DOCKERFILE.format(base=base_image)})
    variables: dict[str, tuple[str, list[EnvTarget]]] = {
        "API_SECRET": (SECRET_VALUE, ["build"]),
        "PUBLIC_NAME": (PUBLIC_VALUE, ["build"]),
    }
    cmd = await registered_build(pool, RING, repo, variables, build_args=["PUBLIC_NAME"])
    built_projects.append(cmd.project_name)
    worker = BuildWorker(
        js,
        make_settings(tmp_path / "builds", timeout_s=BUILD_TIMEOUT_S),
        project_env=env_from_control_api(worker_nc, wait_s=10),
    )
    async with env_server(pool, nats_url, RING):
        await build(worker, cmd)

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "succeeded", events[-1].error
    text = [line.line for line in await log_lines(js, cmd.build_id)]
    assert "▶ Build arguments (visible in the image's history): PUBLIC_NAME" in text
    assert "public name is ***" in text  # every project value is masked in the log
    assert "secret as an argument: [unset]" in text
    assert "secret is ***" in text  # read from the secret mount, masked in the log
    build_line = next(line for line in text if line.startswith("▶ Image build:"))
    assert "--build-arg PUBLIC_NAME " in build_line  # by name: no value on the command line
    assert "--secret id=API_SECRET,src=" in build_line
    assert "--secret id=PUBLIC_NAME,src=" in build_line
    stored = [encode(batch) for batch in await log_batches(js, cmd.build_id)]
    stored += [encode(event) for event in events]
    assert not any(SECRET_VALUE.encode() in message for message in stored)

    artifact = events[-1].artifact
    assert artifact is not None
    assert artifact.kind == "container"
    files = release_files(await fetch_artifact(js, artifact.key), tmp_path / "release")
    archive = files[".launchdeck/image.tar"]
    assert not any(SECRET_VALUE.encode() in blob for blob in layer_contents(archive))
    assert any(PUBLIC_VALUE.encode() in blob for blob in layer_contents(archive))
    engine_run(container_engine, "load", "-i", str(archive))
    manifest = json.loads(files[".launchdeck/release.json"].read_text())
    image_id = manifest["image"]["id"]
    history = engine_run(container_engine, "history", "--no-trunc", image_id)
    assert f"PUBLIC_NAME={PUBLIC_VALUE}" in history  # build arguments are visible: documented
    assert SECRET_VALUE not in history
    assert SECRET_VALUE not in engine_run(container_engine, "image", "inspect", image_id)
    # The secret files were removed with the build.
    assert not list((tmp_path / "builds").rglob("API_SECRET"))


async def test_a_failing_dockerfile_fails_the_build_with_the_engines_error(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    container_engine: str,
    base_image: str,
    tmp_path: Path,
    built_projects: list[str],
) -> None:
    """A RUN step that exits 3: the build fails, its log has the step's output and the engine's
    error, and the build's `error` says the Dockerfile build failed with the engine's last line;
    no build tag is left behind."""
    repo = make_git_repo({"Dockerfile": FAILING_DOCKERFILE.format(base=base_image)})
    project = f"ctr-{uuid.uuid4().hex[:6]}"
    built_projects.append(project)
    cmd = msgspec.structs.replace(command(repo), project_name=project)
    worker = BuildWorker(js, make_settings(tmp_path / "builds", timeout_s=BUILD_TIMEOUT_S))
    await build(worker, cmd)

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "failed"
    error = events[-1].error or ""
    assert error.startswith("The Dockerfile build failed (exit "), error
    lines = await log_lines(js, cmd.build_id)
    text = [line.line for line in lines]
    assert "the step fails" in text
    engine_errors = [
        line.line for line in lines if line.stream == "stderr" and "Error" in line.line
    ]
    assert engine_errors, text
    assert engine_errors[-1] in error
    assert text[-1] == f"✖ Build failed: {error}"
    assert image_tags(container_engine, f"launchdeck-build/{project}") == []


def processes_mentioning(token: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if token in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


async def test_a_build_past_its_time_limit_leaves_no_run_step_running(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    base_image: str,
    tmp_path: Path,
    built_projects: list[str],
) -> None:
    """A RUN step that would run for ten minutes: the build times out, and the step's processes
    (in the RUN container, outside the engine's process group) are gone with it."""
    token = f"step-{uuid.uuid4().hex}"
    dockerfile = f'FROM {base_image}\nRUN echo "{token}" && sleep 600\nCMD ["true"]\n'
    repo = make_git_repo({"Dockerfile": dockerfile})
    cmd = command(repo, timeout_s=8)
    built_projects.append(cmd.project_name)
    worker = BuildWorker(js, make_settings(tmp_path / "builds"))
    await build(worker, cmd)

    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "failed"
    assert events[-1].reason == "timeout", events[-1].error
    assert token in [line.line for line in await log_lines(js, cmd.build_id)]
    assert processes_mentioning(token) == []
