"""compose.yaml end to end, as an operator runs it on a machine without a registry: every image
built on the local base, `podman-compose up`, an admin token, a project built from a git
repository served to the containers (git daemon on this host), its site served by the edge
container; then the stack is stopped and started (the project, its release and its site
survive) and `down -v` leaves nothing of the project behind."""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launchdeck.devservers import free_port
from tests.containers.service_images import ROOT, BuiltImages
from tests.polling import eventually_sync
from tests.support import commit_files, git

pytestmark = pytest.mark.containers

SERVICES = ("postgres", "nats", "control-api", "build-worker", "deploy-engine", "generator")
START_TIMEOUT_S = 240.0  # first start: initdb, migrations, JetStream provisioning
BUILD_TIMEOUT_S = 600.0
PROJECT = "compose-site"


class Stack:
    """One compose project of compose.yaml, on free host ports, with its own secrets."""

    def __init__(self, images: BuiltImages, name: str) -> None:
        self.images = images
        self.name = name
        self.api_port, self.edge_port = free_port(), free_port()
        self.env = {
            "BASE_IMAGE": images.base,
            "LAUNCHDECK_SECRET_KEY": secrets.token_hex(32),
            "LAUNCHDECK_API_PORT_PUBLISHED": str(self.api_port),
            "LAUNCHDECK_EDGE_PORT_PUBLISHED": str(self.edge_port),
            "LAUNCHDECK_ENGINE_PORT_PUBLISHED": str(free_port()),
            "NATS_PORT_PUBLISHED": str(free_port()),
            "NATS_MONITOR_PORT_PUBLISHED": str(free_port()),
        }
        for user in ("CONTROL_API", "BUILD_WORKER", "DEPLOY_ENGINE", "GENERATOR", "OPERATOR"):
            self.env[f"NATS_{user}_PASSWORD"] = "ld" + secrets.token_hex(16)
        self.env["POSTGRES_PASSWORD"] = "ld" + secrets.token_hex(16)
        self.token = ""

    def compose(self, *args: str, timeout_s: float = 600) -> None:
        result = subprocess.run(
            ["podman-compose", "-p", self.name, "-f", str(ROOT / "compose.yaml"), *args],
            cwd=ROOT,
            env={**_base_env(), **self.env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert result.returncode == 0, f"compose {args}: {result.stderr[-4000:]}"

    def podman(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.images.engine, *args], capture_output=True, text=True, timeout=timeout_s
        )

    def containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=io.podman.compose.project={self.name}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = self.podman("ps", "-a", *filters, "--format", "{{.Names}}").stdout
        return out.split()

    def container(self, service: str) -> str:
        (name,) = self.containers(service)
        return name

    def volumes_in_use(self) -> list[str]:
        names = []
        for container in self.containers():
            out = self.podman(
                "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", container
            ).stdout
            names += out.split()
        return names

    def logs(self) -> str:
        parts = []
        for name in self.containers():
            out = self.podman("logs", "--tail", "60", name)
            parts.append(f"----- {name}\n{out.stdout}{out.stderr}")
        return "\n".join(parts)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = response.read()
                if "json" not in response.headers.get("Content-Type", ""):
                    return response.status, data.decode(errors="replace")  # build logs
                return response.status, json.loads(data or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def site(self, project: str) -> str | None:
        """The site's index through the published edge port, or None while it is not served."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.edge_port}/", headers={"Host": f"{project}.localhost"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def serves(self, project: str, marker: str) -> bool:
        page = self.site(project)
        return page is not None and marker in page

    def passes(self, service: str) -> bool:
        """The service container's HEALTHCHECK, run now (podman runs none on a timer here)."""
        check = self.podman("healthcheck", "run", self.container(service))
        return check.returncode == 0

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.api_port}/health", timeout=5
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def _base_env() -> dict[str, str]:
    """This process's environment without the platform's variables (compose sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "LAUNCHDECK_"))}


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A static site in a bare repository served by `git daemon` from this host (the git://
    protocol: the build-worker's shallow fetch needs a smart server, which git's dumb HTTP is
    not), reached from the containers at host.containers.internal; yields (URL, marker text)."""
    marker = f"Served by compose {secrets.token_hex(4)}"
    work = tmp_path / "site"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    commit_files(work, {"index.html": f"<!doctype html><h1>{marker}</h1>"}, "site")
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(work), str(served / "site.git"))
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            f"--port={port}",
            f"--base-path={served}",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually_sync("git daemon", lambda: _accepts(port), 30)
        yield f"git://host.containers.internal:{port}/site.git", marker
    finally:
        daemon.terminate()
        daemon.wait(10)


@pytest.fixture
def stack(service_images: BuiltImages) -> Iterator[Stack]:
    assert shutil.which("podman-compose"), "podman-compose is not installed (setup-podman.sh)"
    stack = Stack(service_images, f"ldtest{secrets.token_hex(3)}")
    try:
        yield stack
    finally:
        stack.compose("down", "-v", timeout_s=300)
        # podman-compose 1.0.3 leaves the project's network behind.
        stack.podman("network", "rm", "-f", f"{stack.name}_default")


def test_compose_platform_end_to_end(stack: Stack, served_repo: tuple[str, str]) -> None:
    repo_url, marker = served_repo
    started = time.monotonic()
    try:
        stack.compose("up", "-d")
        assert sorted(stack.containers()) == sorted(
            f"{stack.name}_{service}_1" for service in SERVICES
        )
        eventually_sync("the control-api's /health", stack.healthy, START_TIMEOUT_S)
        token = stack.podman(
            "exec", stack.container("control-api"), "launchdeck-control-api", "token", "--admin"
        )
        assert token.returncode == 0, token.stderr
        stack.token = token.stdout.strip()

        status, body = stack.api(
            "POST", "/api/v1/projects", {"name": PROJECT, "repo_url": repo_url}
        )
        assert status == 201, body
        status, build = stack.api("POST", f"/api/v1/projects/{PROJECT}/builds", {})
        assert status == 202, build

        def finished() -> dict[str, Any] | None:
            status, body = stack.api("GET", f"/api/v1/builds/{build['id']}")
            assert status == 200, body
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        result = eventually_sync("the build", finished, BUILD_TIMEOUT_S)
        assert result is not None
        assert result["status"] == "succeeded", (
            result,
            stack.api("GET", f"/api/v1/builds/{build['id']}/logs"),
        )
        status, log = stack.api("GET", f"/api/v1/builds/{build['id']}/logs")
        assert status == 200, log
        assert "WITHOUT a sandbox" not in log  # bubblewrap works in the worker's container
        eventually_sync("the site at the edge", lambda: stack.serves(PROJECT, marker), 180)
        for service in SERVICES[2:]:  # each service image's own HEALTHCHECK passes
            eventually_sync(
                f"{service}'s healthcheck", functools.partial(stack.passes, service), 60
            )
        up_s = time.monotonic() - started

        # Stop and start the whole stack: state lives in the volumes.
        stack.compose("stop", timeout_s=300)
        assert stack.site(PROJECT) is None
        stack.compose("start", timeout_s=300)
        eventually_sync("the control-api after the restart", stack.healthy, START_TIMEOUT_S)
        status, projects = stack.api("GET", "/api/v1/projects")
        assert status == 200, projects
        assert [p["name"] for p in projects["items"]] == [PROJECT]
        status, deployments = stack.api("GET", f"/api/v1/projects/{PROJECT}/deployments")
        assert status == 200, deployments
        assert [(d["build_id"], d["status"]) for d in deployments["items"]] == [
            (build["id"], "active")
        ]
        eventually_sync("the site after the restart", lambda: stack.serves(PROJECT, marker), 180)
        print(
            f"compose: up to served site {up_s:.0f} s, "
            f"whole test {time.monotonic() - started:.0f} s"
        )
    except BaseException:
        print(stack.logs())
        raise

    mounted = stack.volumes_in_use()
    assert mounted
    stack.compose("down", "-v", timeout_s=300)
    assert stack.containers() == []
    # Named and anonymous volumes alike (an image's VOLUME that compose does not mount over
    # would be left behind by `down -v`).
    left = stack.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(set(mounted) & set(left)) == []
    pods = stack.podman(
        "pod",
        "ps",
        "--filter",
        f"label=io.podman.compose.project={stack.name}",
        "--format",
        "{{.Name}}",
    ).stdout
    assert pods.split() == []
    volumes = stack.podman(
        "volume",
        "ls",
        "--filter",
        f"label=io.podman.compose.project={stack.name}",
        "--format",
        "{{.Name}}",
    ).stdout
    assert volumes.split() == []
