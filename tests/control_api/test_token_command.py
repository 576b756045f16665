"""`python -m launchdeck.control_api token --admin` (and the `launchdeck-control-api` script)
prints a fresh admin token signed with LAUNCHDECK_SECRET_KEY, records its row in the database
(DATABASE_URL), and the API accepts it until it is revoked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from launchdeck.libs.tokens import verify
from tests.control_api.support import SECRET, Api

MODULE = [sys.executable, "-m", "launchdeck.control_api"]
SCRIPT = [str(Path(sys.executable).with_name("launchdeck-control-api"))]


async def run(
    command: list[str], *args: str, secret: str | None = SECRET, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"LAUNCHDECK_SECRET_KEY", "DATABASE_URL"}
    }
    if secret is not None:
        env["LAUNCHDECK_SECRET_KEY"] = secret
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run, [*command, *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_admin_token_is_printed_and_accepted(
    api: Api, pool: asyncpg.Pool, database_url: str
) -> None:
    """The token alone on stdout: admin scope, expiring when asked, recorded under its name,
    and the API lets it in until it is revoked."""
    before = int(time.time())
    result = await run(
        MODULE,
        "token",
        "--admin",
        "--expires-in",
        "600",
        "--name",
        "ops",
        database_url=database_url,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    claims = verify(SECRET, token)
    assert claims.scopes == ("admin",)
    assert claims.project_id is None
    assert claims.expires_at is not None
    assert before + 600 <= claims.expires_at <= int(time.time()) + 600

    row = await pool.fetchrow(
        "SELECT name, scopes, project_id, expires_at, revoked_at FROM api_tokens WHERE id = $1",
        uuid.UUID(claims.jti),
    )
    assert row is not None
    assert (row["name"], row["scopes"], row["project_id"]) == ("ops", ["admin"], None)
    assert int(row["expires_at"].timestamp()) == claims.expires_at

    reply = await api.call("GET", "/api/v1/projects", token=token)
    assert reply.status == 200, reply.body
    revoked = await api.call("DELETE", f"/api/v1/tokens/{claims.jti}")
    assert revoked.status == 204, revoked.body
    refused = await api.call("GET", "/api/v1/projects", token=token)
    assert refused.status == 401


async def test_console_script_mints_a_token_that_does_not_expire(database_url: str) -> None:
    """`launchdeck-control-api token --admin` without --expires-in: a token with no expiry."""
    result = await run(SCRIPT, "token", "--admin", database_url=database_url)
    assert result.returncode == 0, result.stderr
    claims = verify(SECRET, result.stdout.strip())
    assert claims.scopes == ("admin",)
    assert claims.expires_at is None


async def test_token_needs_the_secret_and_the_admin_flag(database_url: str) -> None:
    """Without LAUNCHDECK_SECRET_KEY or DATABASE_URL it fails naming the variable; without
    --admin or with a bad --expires-in it prints usage; never a traceback, never a token."""
    no_secret = await run(MODULE, "token", "--admin", secret=None, database_url=database_url)
    assert no_secret.returncode != 0
    assert "LAUNCHDECK_SECRET_KEY" in no_secret.stderr
    no_database = await run(MODULE, "token", "--admin")
    assert no_database.returncode != 0
    assert "DATABASE_URL" in no_database.stderr
    no_flag = await run(MODULE, "token")
    assert no_flag.returncode == 2
    assert "--admin" in no_flag.stderr
    bad_expiry = await run(MODULE, "token", "--admin", "--expires-in", "0")
    assert bad_expiry.returncode == 2
    assert "--expires-in" in bad_expiry.stderr
    for result in (no_secret, no_database, no_flag, bad_expiry):
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
