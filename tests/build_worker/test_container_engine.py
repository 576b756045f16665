"""The container engine's choice and command lines, and a worker without one: no engine needed
(static and process apps never need one; a Dockerfile app fails saying what to install)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from launchdeck.build_worker.container_build import storage_race
from launchdeck.build_worker.container_engine import (
    Engine,
    EngineMissing,
    build_argv,
    build_tag,
    engine_env,
    find_engine,
    parse_inspect,
    require_engine,
)
from launchdeck.build_worker.handler import BuildWorker
from launchdeck.build_worker.settings import Settings
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.support import GitRepoFactory


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_podman_is_preferred_then_docker_and_none_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "docker")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_engine(None) == Engine(str(bin_dir / "docker"), "docker")
    executable(bin_dir / "podman")
    assert find_engine(None) == Engine(str(bin_dir / "podman"), "podman")
    assert find_engine("none") is None
    assert find_engine(str(bin_dir / "docker")) == Engine(str(bin_dir / "docker"), "docker")
    with pytest.raises(EngineMissing, match="not an executable program"):
        find_engine("/nowhere/podman")
    with pytest.raises(EngineMissing, match="LAUNCHDECK_CONTAINER_ENGINE=none"):
        require_engine("none")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EngineMissing, match=r"neither podman nor docker.*install podman"):
        require_engine(None)


def test_the_build_command_line_holds_names_never_values(tmp_path: Path) -> None:
    """Build arguments by name (the engine reads the value from its environment), secrets as
    files; podman keeps its intermediate layers, docker has no such flag."""
    podman = Engine("/usr/bin/podman", "podman")
    argv = build_argv(
        podman,
        dockerfile=tmp_path / "Dockerfile",
        tag=build_tag("My_Site", "0b9e4c1a-1111-2222-3333-444455556666"),
        context=tmp_path,
        labels={"launchdeck.project": "My_Site"},
        build_args=["API_URL"],
        secrets={"API_KEY": tmp_path / "s/API_KEY"},
    )
    assert argv == [
        "/usr/bin/podman", "build", "--file", str(tmp_path / "Dockerfile"),
        "--tag", "launchdeck-build/my_site:0b9e4c1a1111", "--layers",
        "--label", "launchdeck.project=My_Site", "--build-arg", "API_URL",
        "--secret", f"id=API_KEY,src={tmp_path / 's/API_KEY'}", str(tmp_path),
    ]  # fmt: skip
    docker = build_argv(
        Engine("/usr/bin/docker", "docker"),
        dockerfile=tmp_path / "Dockerfile",
        tag="t",
        context=tmp_path,
        labels={},
        build_args=[],
        secrets={},
    )
    assert "--layers" not in docker


def test_the_engine_gets_its_own_variables_but_never_the_platforms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = {
        "HOME": "/home/builder",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "HTTPS_PROXY": "http://proxy:3128",
        "NATS_URL": "nats://u:p@x",
        "LAUNCHDECK_SECRET_KEY": "k",
    }
    env = engine_env({"PATH": "/usr/bin", "HOME": "/tmp/fresh"}, worker)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/builder",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "HTTPS_PROXY": "http://proxy:3128",
    }


def test_image_inspect_gives_id_ports_and_command() -> None:
    output = json.dumps(
        [
            {
                "Id": "f041022995fc",
                "Size": 213203562,
                "RepoTags": ["localhost/launchdeck-build/x:cache"],
                "Config": {
                    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "3000": {}},
                    "Entrypoint": ["/entry.sh"],
                    "Cmd": ["serve", "--port", "8080"],
                },
            }
        ]
    )
    facts = parse_inspect(output)
    assert facts.id == "sha256:f041022995fc"
    assert facts.ports == [3000, 8080]
    assert facts.command == ["/entry.sh", "serve", "--port", "8080"]
    assert facts.size == 213203562


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHDECK_CONTAINER_ENGINE", "none")
    assert Settings.from_env().container_engine == "none"
    monkeypatch.delenv("LAUNCHDECK_CONTAINER_ENGINE")
    assert Settings.from_env().container_engine is None


async def test_a_worker_without_an_engine_fails_a_dockerfile_app_saying_what_to_install(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    repo = make_git_repo({"Dockerfile": "FROM scratch\n"})
    cmd = command(repo)
    worker = BuildWorker(js, make_settings(tmp_path / "builds", container_engine="none"))
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "failed"
    error = events[-1].error or ""
    assert "container builds are turned off" in error
    assert "install podman" in error


def test_astorage_race_is_told_from_a_failing_dockerfile() -> None:
    """Only the engine losing an image it had listed (another process removed it) builds again;
    a Dockerfile's own failure does not."""
    raced = "Error: checking if cached image exists from a previous build: getting top layer info: layer not known"  # noqa: E501
    assert storage_race(["STEP 2/2: RUN make", raced])
    assert not storage_race(['Error: building at STEP "RUN exit 7": exit status 7'])
