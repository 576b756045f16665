"""`launchdeck webhook-secret rotate PROJECT` against the real control-api: prints the new
secret once with the four hook URLs; the stored secret is the printed one."""

from __future__ import annotations

import asyncpg
import pytest

from launchdeck.control_api.domain import webhook_secrets
from launchdeck.control_api.domain.sealing import KeyRing
from tests.cli.test_env_commands import RealApi, _project, cli, printed, real_api
from tests.control_api.support import SECRET, register_tokens, unique

__all__ = ["real_api"]  # the fixture, shared with the env commands' tests


async def _stored_secret(pool: asyncpg.Pool, name: str) -> str:
    project = await _project(pool, name)
    async with pool.acquire() as conn:
        return await webhook_secrets.secret_of(conn, KeyRing.from_secrets(SECRET), project.id)


def test_rotate_prints_the_new_secret_and_the_hook_urls(
    real_api: RealApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """The secret printed is the one now stored (the creation's no longer is); each host's URL
    is listed; an unknown project is a readable error, exit 1."""
    real_api.run(register_tokens(real_api.pool))
    name = unique("cli-hook")
    assert cli(real_api, "projects", "create", name, "https://git.invalid/r.git") == 0
    created = capsys.readouterr().out
    first = created.split("webhook secret (shown once): ")[1].split()[0]
    assert real_api.run(_stored_secret(real_api.pool, name)) == first

    assert cli(real_api, "webhook-secret", "rotate", name) == 0
    lines = printed(capsys.readouterr().out)
    assert lines[0].startswith(f"New webhook secret for {name}")
    secret = lines[1].strip()
    assert secret != first
    assert real_api.run(_stored_secret(real_api.pool, name)) == secret
    for provider in ("github", "gitlab", "gitea", "generic"):
        url = f"{real_api.url}/api/v1/hooks/{provider}/{name}"
        assert any(line.split()[:2] == [provider, url] for line in lines), lines

    assert cli(real_api, "webhook-secret", "rotate", unique("ghost")) == 1
    assert "Not Found" in capsys.readouterr().err
