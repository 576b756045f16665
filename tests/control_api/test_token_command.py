"""`python -m launchdeck.control_api token --admin` (and the `launchdeck-control-api` script)
prints a fresh admin token signed with LAUNCHDECK_SECRET_KEY, which the API accepts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from launchdeck.libs.tokens import verify
from tests.control_api.support import SECRET, Api

MODULE = [sys.executable, "-m", "launchdeck.control_api"]
SCRIPT = [str(Path(sys.executable).with_name("launchdeck-control-api"))]


async def run(
    command: list[str], *args: str, secret: str | None = SECRET
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAUNCHDECK_SECRET_KEY"}
    if secret is not None:
        env["LAUNCHDECK_SECRET_KEY"] = secret
    return await asyncio.to_thread(
        subprocess.run, [*command, *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_admin_token_is_printed_and_accepted(api: Api) -> None:
    """The token alone on stdout: admin scope, expiring when asked, and the API lets it in."""
    before = int(time.time())
    result = await run(MODULE, "token", "--admin", "--expires-in", "600")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    claims = verify(SECRET, token)
    assert claims.scopes == ("admin",)
    assert claims.project_id is None
    assert claims.expires_at is not None
    assert before + 600 <= claims.expires_at <= int(time.time()) + 600

    reply = await api.call("GET", "/api/v1/projects", token=token)
    assert reply.status == 200, reply.body


async def test_console_script_mints_a_token_that_does_not_expire() -> None:
    """`launchdeck-control-api token --admin` without --expires-in: a token with no expiry."""
    result = await run(SCRIPT, "token", "--admin")
    assert result.returncode == 0, result.stderr
    claims = verify(SECRET, result.stdout.strip())
    assert claims.scopes == ("admin",)
    assert claims.expires_at is None


async def test_token_needs_the_secret_and_the_admin_flag() -> None:
    """Without LAUNCHDECK_SECRET_KEY it fails naming the variable; without --admin or with a
    bad --expires-in it prints usage; never a traceback, never a token."""
    no_secret = await run(MODULE, "token", "--admin", secret=None)
    assert no_secret.returncode != 0
    assert "LAUNCHDECK_SECRET_KEY" in no_secret.stderr
    no_flag = await run(MODULE, "token")
    assert no_flag.returncode == 2
    assert "--admin" in no_flag.stderr
    bad_expiry = await run(MODULE, "token", "--admin", "--expires-in", "0")
    assert bad_expiry.returncode == 2
    assert "--expires-in" in bad_expiry.stderr
    for result in (no_secret, no_flag, bad_expiry):
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
