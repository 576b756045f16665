"""Rotating the secret key: `launchdeck-control-api secrets rotate` re-seals every env var value
and webhook secret under the new key; until then (and after) every value still decrypts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg

from launchdeck.contracts.api import EnvVarSet
from launchdeck.control_api.domain import env_vars, webhook_secrets
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.store import env_vars as store
from launchdeck.control_api.store import webhook_secrets as webhook_secret_store
from launchdeck.control_api.store.records import EnvVar
from tests.control_api.helpers import new_project

OLD = "old-secret-key-" + uuid.uuid4().hex
NEW = "new-secret-key-" + uuid.uuid4().hex


async def all_vars(pool: asyncpg.Pool) -> dict[tuple[uuid.UUID, str], EnvVar]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT project_id FROM env_vars GROUP BY project_id")
        found = {}
        for row in rows:
            for var in await store.list_page(conn, row["project_id"], limit=1000, after_key=None):
                found[(var.project_id, var.key)] = var
    return found


def rotate_command(
    database_url: str, current: str, previous: str | None
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LAUNCHDECK_")},
        "DATABASE_URL": database_url,
        "LAUNCHDECK_SECRET_KEY": current,
        "LAUNCHDECK_LOG_FORMAT": "json",
    }
    if previous is not None:
        env["LAUNCHDECK_SECRET_KEY_PREVIOUS"] = previous
    return subprocess.run(
        [sys.executable, "-m", "launchdeck.control_api", "secrets", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rotate_reseals_every_value_and_old_values_still_decrypt(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Values set under the old key read under (new + previous) before the rotation; the command
    re-seals them all under the new key (new ciphertexts and nonces, same values, `updated_at`
    kept), says so, and afterwards the new key alone reads them."""
    old_ring = KeyRing.from_secrets(OLD)
    expected = {}
    projects: list[uuid.UUID] = []
    async with pool.acquire() as conn:
        for n in range(3):
            project = await new_project(pool, keyring=old_ring)
            projects.append(project.id)
            for i in range(150):  # more than one batch
                key = f"VAR_{n}_{i}"
                value = f"value-{n}-{i}-{uuid.uuid4().hex}"
                await env_vars.set_var(conn, old_ring, project, key, EnvVarSet(value=value))
                expected[(project.id, key)] = value
    before = await all_vars(pool)
    during = KeyRing.from_secrets(NEW, OLD)
    for ident, var in before.items():
        assert var.key_id == old_ring.current.key_id
        assert env_vars.open_value(during, var) == expected[ident]

    # Without the previous key nothing can be read, so nothing is re-sealed: exit 1.
    refused = await asyncio.to_thread(rotate_command, database_url, NEW, None)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "re-encrypted 0 env var value(s)" in refused.stdout
    assert f"450 value(s) are still under key {old_ring.current.key_id}" in refused.stderr

    done = await asyncio.to_thread(rotate_command, database_url, NEW, OLD)
    assert done.returncode == 0, done.stdout + done.stderr
    new_ring = KeyRing.from_secrets(NEW)
    assert f"re-encrypted 450 env var value(s) under key {new_ring.current.key_id}" in done.stdout
    assert f"sealed 3 project webhook secret(s) under key {new_ring.current.key_id}" in done.stdout
    assert "every value is under the current key" in done.stdout
    async with pool.acquire() as conn:
        for project_id in projects:  # the webhook secrets moved to the new key too
            stored = await webhook_secret_store.get(conn, project_id)
            assert stored is not None
            assert stored.key_id == new_ring.current.key_id
            webhook_secrets.open_stored(new_ring, stored)
    for value in expected.values():
        assert value not in done.stdout + done.stderr

    after = await all_vars(pool)
    assert after.keys() == before.keys()
    for ident, var in after.items():
        assert var.key_id == new_ring.current.key_id
        assert var.ciphertext != before[ident].ciphertext
        assert var.nonce != before[ident].nonce
        assert var.updated_at == before[ident].updated_at  # nobody changed the variable
        assert env_vars.open_value(new_ring, var) == expected[ident]

    # A second run finds nothing to do.
    again = await asyncio.to_thread(rotate_command, database_url, NEW, OLD)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "re-encrypted 0 env var value(s)" in again.stdout
