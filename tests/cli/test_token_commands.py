"""`launchdeck tokens create|list|revoke` and `launchdeck audit` against the real control-api:
the value printed once and alone on stdout, usable at once, never listed; revoked → refused;
the audit log as a table."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.cli.test_env_commands import RealApi, cli, printed, real_api
from tests.control_api.support import unique
from tests.polling import eventually_sync

__all__ = ["real_api"]  # the fixture, shared with the env command tests


def status_with(api: RealApi, bearer: str, path: str = "/api/v1/projects") -> int:
    async def get() -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.get(api.url + path, headers={"Authorization": f"Bearer {bearer}"}) as resp,
        ):
            return resp.status

    return asyncio.run(get())


def test_create_list_revoke(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    project = unique("cli-tok")
    assert cli(real_api, "projects", "create", project, "https://git.invalid/r.git") == 0
    capsys.readouterr()

    code = cli(
        real_api,
        "tokens", "create", "ci-deployer",
        "--scope", "read", "--scope", "deploy",
        "--project", project,
        "--expires-in", "3600",
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    (value,) = printed(captured.out)  # the value alone on stdout
    assert "ci-deployer" in captured.err
    assert "read, deploy" in captured.err
    assert status_with(real_api, value, f"/api/v1/projects/{project}") == 200
    assert status_with(real_api, value, "/api/v1/tokens") == 403

    assert cli(real_api, "tokens", "list") == 0
    listing = capsys.readouterr().out
    assert value not in listing
    (row,) = [line for line in printed(listing) if "ci-deployer" in line]
    token_id = row.split()[0]
    assert "read,deploy" in row

    assert cli(real_api, "tokens", "revoke", token_id) == 0
    assert f"Revoked token {token_id}" in capsys.readouterr().out
    eventually_sync("the revoked token refused", lambda: status_with(real_api, value) == 401)

    # Errors are readable problems, exit 1: admin with a project, an unknown token.
    assert cli(real_api, "tokens", "create", "x", "--scope", "admin", "--project", project) == 1
    assert "project_id" in capsys.readouterr().err
    assert cli(real_api, "tokens", "revoke", "00000000-0000-0000-0000-000000000000") == 1
    assert "no such token" in capsys.readouterr().err


def test_audit_lists_who_did_what(real_api: RealApi, capsys: pytest.CaptureFixture[str]) -> None:
    project = unique("cli-aud")
    assert cli(real_api, "projects", "create", project, "https://git.invalid/r.git") == 0
    assert cli(real_api, "env", "set", project, "FLAG", "on") == 0
    capsys.readouterr()

    assert cli(real_api, "audit", "--project", project) == 0
    lines = printed(capsys.readouterr().out)
    assert lines[0].split() == ["WHEN", "WHO", "ACTION", "PROJECT", "TARGET"]
    assert [line.split()[3] for line in lines[1:]] == ["env.set", "project.create"]
    assert all(line.split()[2] == "tests" for line in lines[1:])

    assert cli(real_api, "audit") == 0
    assert "env.set" in capsys.readouterr().out
