"""Encryption of env var values at rest: AES-256-GCM under a key derived from the platform's
secret key, with the key's id stored beside each value so the key can be rotated.

Why derived, not the secret key itself: `LAUNCHDECK_SECRET_KEY` also signs API tokens (HMAC); the
encryption key is HKDF-SHA256 of it with a label of its own, so neither use weakens the other. The
key id is another HKDF output of the same secret (16 hex digits): it names the key without saying
anything about it, and tells at read time which key a value was sealed under.

What is stored per value (`env_vars`): a fresh random 96-bit `nonce`, the `ciphertext` (with
GCM's 16-byte tag at its end) and the `key_id`. The associated data binds a ciphertext to its
project and name, so a value copied to another row (another project's, another name) does not
decrypt: whoever can write the table still cannot move a secret where it would be shown to
someone else.

Rotation (`KeyRing`): values are sealed under the current key (`LAUNCHDECK_SECRET_KEY`) and
opened with whichever key their id names — the current one or `LAUNCHDECK_SECRET_KEY_PREVIOUS`
— so a control-api restarted with a new key keeps reading the old values while
`launchdeck-control-api secrets rotate` re-encrypts them (`domain.env_vars.rotate`).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
_ENCRYPTION_LABEL = b"launchdeck env vars: AES-256-GCM key v1"
_KEY_ID_LABEL = b"launchdeck env vars: key id v1"


class UnreadableSecret(Exception):
    """A stored value cannot be decrypted: its key is not held, or it does not authenticate."""


def _hkdf(secret: str, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(
        secret.encode()
    )


@dataclass(frozen=True)
class SecretKey:
    """One key: the AES-256 key derived from a secret, and its id."""

    key_id: str
    aead: AESGCM = field(repr=False, compare=False)

    @classmethod
    def derive(cls, secret: str) -> SecretKey:
        if not secret:
            raise ValueError("the secret key must not be empty")
        return cls(
            key_id=_hkdf(secret, _KEY_ID_LABEL, 8).hex(),
            aead=AESGCM(_hkdf(secret, _ENCRYPTION_LABEL, 32)),
        )


@dataclass(frozen=True)
class Sealed:
    """A value as stored: what `env_vars` keeps of it."""

    nonce: bytes
    ciphertext: bytes
    key_id: str


def associated_data(project_id: uuid.UUID, key: str) -> bytes:
    """What a ciphertext is bound to: its project and its name."""
    return f"launchdeck-env:{project_id}:{key}".encode()


@dataclass(frozen=True)
class KeyRing:
    """The current key (seals) and the keys that may still open values (current + previous)."""

    current: SecretKey
    previous: tuple[SecretKey, ...] = ()

    @classmethod
    def from_secrets(cls, current: str, previous: str | None = None) -> KeyRing:
        """The ring of `LAUNCHDECK_SECRET_KEY` and, during a rotation,
        `LAUNCHDECK_SECRET_KEY_PREVIOUS` (ignored when it is the same secret)."""
        now = SecretKey.derive(current)
        older = SecretKey.derive(previous) if previous else None
        if older is None or older.key_id == now.key_id:
            return cls(now)
        return cls(now, (older,))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return (self.current.key_id, *(k.key_id for k in self.previous))

    def seal(self, project_id: uuid.UUID, key: str, value: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self.current.aead.encrypt(
            nonce, value.encode(), associated_data(project_id, key)
        )
        return Sealed(nonce=nonce, ciphertext=ciphertext, key_id=self.current.key_id)

    def open(self, project_id: uuid.UUID, key: str, sealed: Sealed) -> str:
        """The plaintext of `sealed`; UnreadableSecret (naming the key id, never a value) when
        its key is not in the ring or it does not authenticate."""
        secret = next(
            (k for k in (self.current, *self.previous) if k.key_id == sealed.key_id), None
        )
        if secret is None:
            raise UnreadableSecret(
                f"{key} is encrypted under key id {sealed.key_id}, which this control-api does "
                f"not hold (it has {', '.join(self.key_ids)}): set LAUNCHDECK_SECRET_KEY_PREVIOUS "
                "to the secret key it was set with"
            )
        try:
            plain = secret.aead.decrypt(
                sealed.nonce, sealed.ciphertext, associated_data(project_id, key)
            )
        except InvalidTag:
            raise UnreadableSecret(
                f"{key} does not decrypt under key id {sealed.key_id}: the stored value was "
                "altered or belongs to another project or name"
            ) from None
        return plain.decode()


@dataclass
class Resealing:
    """What a key rotation did to one kind of sealed value (env vars, webhook secrets): values
    re-sealed under the current key, those it could not open (their names), and the count per
    key id afterwards (`plaintext` for any still unsealed)."""

    key_id: str
    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)
    by_key_id: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every value is under the current key."""
        return set(self.by_key_id) <= {self.key_id}
