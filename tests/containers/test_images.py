"""The service images (deploy/docker/*.Dockerfile, built by `make images` on the local base):
non-root, labelled, with a health check, holding their own service's packages and no other's,
and able to start their program."""

from __future__ import annotations

import subprocess

import pytest

from tests.containers.service_images import SERVICES, BuiltImages

pytestmark = pytest.mark.containers

MODULES = {
    "control-api": "launchdeck.control_api",
    "build-worker": "launchdeck.build_worker",
    "deploy-engine": "launchdeck.deploy_engine",
    "generator": "launchdeck.generator",
}
# What each image must be able to run besides its Python program.
TOOLS = {
    "control-api": [],
    "build-worker": [
        ["git", "--version"],
        ["node", "--version"],
        ["npm", "--version"],
        ["bwrap", "--version"],
    ],
    "deploy-engine": [["caddy", "version"], ["node", "--version"], ["bwrap", "--version"]],
    "generator": [],
}
# pyarrow is trimmed in these images (flight, s3, headers): Parquet must still work. The
# interpreter leaves with os._exit: the locked pyarrow sometimes aborts in its own teardown at
# exit ("terminate called without an active exception"), trimmed or not (1 run in 8 on the host's
# .venv too), which is not what this test is about.
PARQUET = (
    "import io, os, sys, pyarrow as pa, pyarrow.parquet as pq\n"
    "buf = io.BytesIO(); pq.write_table(pa.table({'title': ['a', 'b']}), buf)\n"
    "print(pq.read_table(io.BytesIO(buf.getvalue())).column('title').to_pylist())\n"
    "sys.stdout.flush(); os._exit(0)"
)


def run(images: BuiltImages, service: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            images.engine,
            "run",
            "--rm",
            "--net=none",
            "--entrypoint",
            argv[0],
            images.ref(service),
            *argv[1:],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_image_metadata(service_images: BuiltImages, service: str) -> None:
    """Labels (version, commit), a non-root user, a health check, the service as its command."""
    info = service_images.inspect(service)
    config = info["Config"]
    assert isinstance(config, dict)
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == service_images.version
    assert labels["org.opencontainers.image.revision"] == service_images.commit
    assert labels["org.opencontainers.image.title"] == f"launchdeck-{service}"
    assert config["User"] == "launchdeck"
    assert config["Cmd"] == [f"launchdeck-{service}"]
    # podman shows it beside Config, docker in it.
    healthcheck = config.get("Healthcheck") or info.get("Healthcheck") or {}
    assert isinstance(healthcheck, dict)
    assert healthcheck.get("Test", [])[:3] == [
        "CMD",
        "python3",
        "/usr/local/lib/launchdeck/healthcheck.py",
    ], healthcheck


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_non_root_with_only_its_service(
    service_images: BuiltImages, service: str
) -> None:
    ids = run(service_images, service, "id", "-u")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.strip() == "10001"

    probe = run(
        service_images,
        service,
        "python3",
        "-c",
        "import importlib.util as u, sys; "
        "print(sys.executable); "
        "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))",
        *MODULES.values(),
        "launchdeck.contracts",
        "launchdeck.libs",
        "launchdeck.cli",
        "launchdeck.devservers",
        "pytest",
    )
    assert probe.returncode == 0, probe.stderr
    executable, present = probe.stdout.splitlines()
    assert executable == "/app/.venv/bin/python3"
    assert present.split() == [MODULES[service], "launchdeck.contracts", "launchdeck.libs"]

    entry = run(service_images, service, "python3", "-c", f"import {MODULES[service]}.main")
    assert entry.returncode == 0, entry.stderr
    for argv in TOOLS[service]:
        tool = run(service_images, service, *argv)
        assert tool.returncode == 0, (argv, tool.stderr)
        assert tool.stdout.strip(), argv


def test_control_api_command_line(service_images: BuiltImages) -> None:
    result = run(service_images, "control-api", "launchdeck-control-api", "--help")
    assert result.returncode == 0, result.stderr
    assert "token" in result.stdout
    assert "migrate" in result.stdout


def test_trimmed_pyarrow_still_writes_parquet(service_images: BuiltImages) -> None:
    result = run(service_images, "control-api", "python3", "-c", PARQUET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['a', 'b']"


def test_the_generator_carries_no_pyarrow(service_images: BuiltImages) -> None:
    """Exports are the control-api's: the generator's image is spared pyarrow's ~100 MB."""
    result = run(service_images, "generator", "python3", "-c", "import pyarrow")
    assert result.returncode != 0
    assert "No module named 'pyarrow'" in result.stderr


def test_worker_healthcheck_says_unhealthy_without_nats(service_images: BuiltImages) -> None:
    """The workers' check (no HTTP to ask) is their NATS connection: none here, so exit 1."""
    result = run(
        service_images,
        "generator",
        "python3",
        "/usr/local/lib/launchdeck/healthcheck.py",
        "nats",
    )
    assert result.returncode == 1, result.stdout + result.stderr
