"""Detection of Dockerfile apps (container apps): pure logic over a checkout, no engine needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launchdeck.build_worker.detect import LOOKED_FOR, detect
from launchdeck.build_worker.errors import BuildFailed
from launchdeck.contracts.messages import BuildConfig
from tests.build_worker.test_detect import make_tree

DOCKERFILE = 'FROM localhost/launchdeck-base:bookworm\nCMD ["python3", "-m", "http.server"]\n'


def test_a_dockerfile_alone_is_a_container_app(tmp_path: Path) -> None:
    """Only a Dockerfile: a container plan built from it with the root as context, and no
    command of the worker's to run."""
    make_tree(tmp_path, {"Dockerfile": DOCKERFILE, "app.py": "print(1)"})
    plan = detect(tmp_path, BuildConfig(health_path="healthz"))
    assert plan.kind == "container"
    assert plan.dockerfile == (tmp_path / "Dockerfile").resolve()
    assert plan.root == tmp_path.resolve()
    assert (plan.install_command, plan.build_command, plan.processes) == (None, None, {})
    assert plan.health_path == "/healthz"
    assert plan.description.startswith("Dockerfile")
    assert "container image" in plan.description


def test_a_python_project_without_a_procfile_but_with_a_dockerfile_is_a_container_app(
    tmp_path: Path,
) -> None:
    """requirements.txt alone says nothing to run; its Dockerfile does."""
    make_tree(tmp_path, {"Dockerfile": DOCKERFILE, "requirements.txt": "aiohttp\n"})
    assert detect(tmp_path, BuildConfig()).kind == "container"


def test_package_json_with_a_dockerfile_stays_a_node_app(tmp_path: Path) -> None:
    """A recognised layout wins over a Dockerfile next to it, as before."""
    pkg = json.dumps({"name": "api", "scripts": {"start": "node server.js"}})
    make_tree(tmp_path, {"Dockerfile": DOCKERFILE, "package.json": pkg})
    plan = detect(tmp_path, BuildConfig())
    assert plan.kind == "process"
    assert plan.start_command == "npm start"
    assert plan.dockerfile is None


def test_index_html_with_a_dockerfile_stays_a_static_site(tmp_path: Path) -> None:
    make_tree(tmp_path, {"Dockerfile": DOCKERFILE, "index.html": "<h1>x</h1>"})
    assert detect(tmp_path, BuildConfig()).kind == "static"


def test_launchdeck_toml_dockerfile_forces_a_container_app(tmp_path: Path) -> None:
    """`dockerfile` in launchdeck.toml (relative to root_dir) makes a container app even next
    to a package.json with a start script; its build_args are taken."""
    pkg = json.dumps({"name": "api", "scripts": {"start": "node server.js"}})
    toml = (
        'root_dir = "svc"\n[build]\n'
        'dockerfile = "docker/web.Dockerfile"\nbuild_args = ["API_URL"]\n'
    )
    make_tree(
        tmp_path,
        {
            "launchdeck.toml": toml,
            "svc/package.json": pkg,
            "svc/docker/web.Dockerfile": DOCKERFILE,
        },
    )
    plan = detect(tmp_path, BuildConfig())
    assert plan.kind == "container"
    assert plan.root == (tmp_path / "svc").resolve()
    assert plan.dockerfile == (tmp_path / "svc/docker/web.Dockerfile").resolve()
    assert plan.build_args == ("API_URL",)
    assert "dockerfile setting" in plan.description


def test_the_project_setting_dockerfile_forces_a_container_app(tmp_path: Path) -> None:
    make_tree(tmp_path, {"index.html": "x", "Containerfile": DOCKERFILE})
    plan = detect(tmp_path, BuildConfig(dockerfile="Containerfile", build_args=["A_B"]))
    assert plan.kind == "container"
    assert plan.build_args == ("A_B",)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('build_args = "API_URL"\n', "build_args must be a list of env var names"),
        ("build_args = [1, 2]\n", "build_args must be a list of env var names"),
        ('build_args = ["api-url", "OK"]\n', "build_args must name env vars"),
        ('build_args = ["1ABC"]\n', "'1ABC'"),
        ("dockerfile = 3\n", "dockerfile must be a string"),
        ('dockerfile = "../outside/Dockerfile"\n', "points outside the repository"),
        ('dockerfile = "/etc/Dockerfile"\n', "must be a relative path inside the repository"),
        ('dockerfile = "missing/Dockerfile"\n', "is not a file in the repository"),
    ],
)
def test_bad_container_settings_in_launchdeck_toml_fail_readably(
    tmp_path: Path, toml: str, message: str
) -> None:
    make_tree(tmp_path, {"launchdeck.toml": toml, "Dockerfile": DOCKERFILE})
    with pytest.raises(BuildFailed) as failed:
        detect(tmp_path, BuildConfig())
    assert message in str(failed.value)


def test_bad_build_args_in_the_project_settings_fail_readably(tmp_path: Path) -> None:
    make_tree(tmp_path, {"Dockerfile": DOCKERFILE})
    with pytest.raises(BuildFailed, match="build_args must name env vars"):
        detect(tmp_path, BuildConfig(build_args=["lower"]))


def test_nothing_detected_says_a_dockerfile_was_looked_for(tmp_path: Path) -> None:
    make_tree(tmp_path, {"README.md": "hi"})
    with pytest.raises(BuildFailed) as failed:
        detect(tmp_path, BuildConfig())
    assert "a Dockerfile" in LOOKED_FOR
    assert LOOKED_FOR in str(failed.value)
