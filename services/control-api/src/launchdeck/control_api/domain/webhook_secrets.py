"""A project's webhook secret: made at creation, sealed at rest, opened to verify a delivery,
replaced on request (`POST …/webhook-secret`) and re-sealed by `secrets rotate`.

Sealed like an env var value (`sealing.KeyRing`, AES-256-GCM under LAUNCHDECK_SECRET_KEY, its
key id stored beside it), with `webhook-secret` as the name in the associated data: no env var
can have that name (they are upper case), so neither ciphertext opens as the other. Why sealed:
whoever holds the secret can make the platform build any commit of the repository, and a copy of
the database should not hand it over.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from launchdeck.control_api.domain.errors import NotFound
from launchdeck.control_api.domain.sealing import KeyRing, Resealing, Sealed, UnreadableSecret
from launchdeck.control_api.store import webhook_secrets as store

SEALED_NAME = "webhook-secret"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def seal(keyring: KeyRing, project_id: uuid.UUID, secret: str) -> Sealed:
    return keyring.seal(project_id, SEALED_NAME, secret)


def open_stored(keyring: KeyRing, stored: store.StoredSecret) -> str:
    """The plaintext secret (UnreadableSecret when its key is not held)."""
    if stored.ciphertext is None or stored.nonce is None or stored.key_id is None:
        if stored.plaintext is None:  # the table's check forbids it
            raise UnreadableSecret(f"project {stored.project_id} has no webhook secret")
        return stored.plaintext
    sealed = Sealed(nonce=stored.nonce, ciphertext=stored.ciphertext, key_id=stored.key_id)
    return keyring.open(stored.project_id, SEALED_NAME, sealed)


async def secret_of(conn: Any, keyring: KeyRing, project_id: uuid.UUID) -> str:
    stored = await store.get(conn, project_id)
    if stored is None:
        raise NotFound(f"no project {str(project_id)!r}")
    return open_stored(keyring, stored)


@dataclass(frozen=True)
class Rotated:
    secret: str = field(repr=False)
    rotated_at: datetime


async def rotate(conn: Any, keyring: KeyRing, project_id: uuid.UUID) -> Rotated:
    """Replace the project's secret by a new one: from the commit on, only the new one
    verifies (deliveries read the secret from Postgres each time, nothing caches it)."""
    secret = new_secret()
    sealed = seal(keyring, project_id, secret)
    rotated_at = await store.store_sealed(
        conn, project_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext, key_id=sealed.key_id
    )
    if rotated_at is None:
        raise NotFound(f"no project {str(project_id)!r}")
    return Rotated(secret=secret, rotated_at=rotated_at)


async def reseal_all(pool: asyncpg.Pool, keyring: KeyRing, *, batch: int = 200) -> Resealing:
    """Seal every webhook secret under the current key: plaintext ones (projects created before
    secrets were sealed) and those under a previous key of `keyring`, a batch per transaction."""
    report = Resealing(key_id=keyring.current.key_id)
    old = [k.key_id for k in keyring.previous]
    after: uuid.UUID | None = None
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.needing_reseal(conn, old, limit=batch, after=after)
            for stored in rows:
                try:
                    secret = open_stored(keyring, stored)
                except UnreadableSecret:
                    report.unreadable.append(str(stored.project_id))
                    continue
                sealed = seal(keyring, stored.project_id, secret)
                await store.reseal(
                    conn,
                    stored.project_id,
                    nonce=sealed.nonce,
                    ciphertext=sealed.ciphertext,
                    key_id=sealed.key_id,
                )
                report.resealed += 1
        if len(rows) < batch:
            break
        after = rows[-1].project_id
    async with pool.acquire() as conn:
        report.by_key_id = await store.count_by_key_id(conn)
    return report
