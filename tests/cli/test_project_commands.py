"""`launchdeck projects create|list|show|update` against the real control-api: build settings of
a container app (`--dockerfile`, `--build-arg`) and its resources (`--memory`, `--cpus`), what
is printed, what is stored, and a redeploy carrying the new resources."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import AppResources, DeployRequested
from launchdeck.control_api.domain import projects as projects_service
from tests.cli.test_env_commands import RealApi, cli, printed, real_api
from tests.control_api.helpers import activate, new_build, succeed
from tests.control_api.support import unique

__all__ = ["real_api"]

REPO = "https://git.invalid/r.git"


async def _project(pool: asyncpg.Pool, name: str) -> Any:
    async with pool.acquire() as conn:
        return await projects_service.resolve_project(conn, name)


async def _go_live(pool: asyncpg.Pool, name: str) -> None:
    project = await _project(pool, name)
    await activate(pool, await succeed(pool, await new_build(pool, project)), datetime.now(UTC))


async def _deploy_command(pool: asyncpg.Pool, deployment_id: str) -> DeployRequested:
    """The deploy command waiting in the outbox (no relay runs here)."""
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM outbox WHERE id = $1", uuid.UUID(deployment_id)
        )
    assert payload is not None
    return decode(bytes(payload), DeployRequested)


def test_create_with_container_settings_then_show_and_list(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """create takes --dockerfile, --build-arg (repeatable), --memory and --cpus: they are
    stored and printed; show prints them; list has a RESOURCES column once a project has any."""
    name = unique("cli-box")
    code = cli(
        real_api, "projects", "create", name, REPO,
        "--dockerfile", "docker/Dockerfile", "--build-arg", "NODE_ENV", "--build-arg", "API_URL",
        "--memory", "256", "--cpus", "0.5",
    )  # fmt: skip
    assert code == 0
    out = printed(capsys.readouterr().out)
    assert f"Created project {name}" in out[0]
    assert "  build      dockerfile=docker/Dockerfile build_args=NODE_ENV,API_URL" in out
    assert "  resources  256 MiB memory, 0.5 CPUs" in out
    project = real_api.run(_project(real_api.pool, name))
    assert project.resources == {"memory_mb": 256, "cpus": 0.5}
    assert project.build_config == {
        "dockerfile": "docker/Dockerfile",
        "build_args": ["NODE_ENV", "API_URL"],
    }

    assert cli(real_api, "projects", "show", name) == 0
    shown = printed(capsys.readouterr().out)
    assert shown[0] == f"{name} ({project.id})"
    assert f"  repo       {REPO}" in shown
    assert "  resources  256 MiB memory, 0.5 CPUs" in shown

    plain = unique("cli-plain")
    assert cli(real_api, "projects", "create", plain, REPO) == 0
    out = printed(capsys.readouterr().out)
    assert not any("resources" in line or "build " in line for line in out)
    assert cli(real_api, "projects", "list") == 0
    rows = [line.split() for line in printed(capsys.readouterr().out)]
    assert rows[0] == ["NAME", "BRANCH", "ID", "RESOURCES", "REPO"]
    resources = {row[0]: row[3] for row in rows[1:]}
    assert resources[name] == "memory=256MiB,cpus=0.5"
    assert resources[plain] == "-"


def test_update_changes_only_what_is_given(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """update sends build and resources whole, with only the options given changed; bad values
    are the API's 422 (exit 1); no option at all is an error before any call."""
    name = unique("cli-upd")
    code = cli(
        real_api, "projects", "create", name, REPO,
        "--root-dir", "app", "--dockerfile", "Dockerfile", "--memory", "128", "--cpus", "1",
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()

    assert cli(real_api, "projects", "update", name, "--memory", "512") == 0
    out = printed(capsys.readouterr().out)
    assert out[0].endswith(f"Updated project {name}")
    assert "  resources  512 MiB memory, 1 CPU" in out
    assert any(f"launchdeck redeploy {name}" in line for line in out)
    project = real_api.run(_project(real_api.pool, name))
    assert project.resources == {"memory_mb": 512, "cpus": 1.0}
    assert project.build_config == {"root_dir": "app", "dockerfile": "Dockerfile"}

    assert cli(real_api, "projects", "update", name, "--build-arg", "A", "--build-arg", "B") == 0
    out = printed(capsys.readouterr().out)
    assert not any("launchdeck redeploy" in line for line in out)  # resources unchanged
    project = real_api.run(_project(real_api.pool, name))
    assert project.build_config == {
        "root_dir": "app",
        "dockerfile": "Dockerfile",
        "build_args": ["A", "B"],
    }
    assert project.resources == {"memory_mb": 512, "cpus": 1.0}

    assert cli(real_api, "projects", "update", name, "--reset-resources", "--cpus", "2") == 0
    capsys.readouterr()
    assert real_api.run(_project(real_api.pool, name)).resources == {"cpus": 2.0}

    assert cli(real_api, "projects", "update", name, "--memory", "1") == 1
    err = capsys.readouterr().err
    assert "resources.memory_mb" in err
    assert ">= 16" in err
    assert cli(real_api, "projects", "update", name, "--cpus", "0") == 1
    assert "resources.cpus" in capsys.readouterr().err
    assert cli(real_api, "projects", "update", name, "--build-arg", "not-a-name") == 1
    assert "build.build_args[0]" in capsys.readouterr().err
    assert cli(real_api, "projects", "update", name) == 1
    assert "nothing to change" in capsys.readouterr().err
    assert real_api.run(_project(real_api.pool, name)).resources == {"cpus": 2.0}


def test_redeploy_after_update_carries_the_new_resources(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """update --memory/--cpus, then redeploy: its deploy command has the new limits."""
    name = unique("cli-redep")
    assert cli(real_api, "projects", "create", name, REPO, "--memory", "64") == 0
    real_api.run(_go_live(real_api.pool, name))
    assert cli(real_api, "projects", "update", name, "--memory", "300", "--cpus", "0.75") == 0
    capsys.readouterr()

    assert cli(real_api, "redeploy", name, "--timeout", "0.2") == 1  # no engine: stays pending
    first = printed(capsys.readouterr().out)[0]
    deployment_id = first.split("deployment ")[1].split()[0]
    command = real_api.run(_deploy_command(real_api.pool, deployment_id))
    assert command.resources == AppResources(memory_mb=300, cpus=0.75)
