"""Env var values at rest (`domain.sealing`): AES-256-GCM under a key derived from the secret key,
a key id beside each value, bound to its project and name, readable under the previous key."""

from __future__ import annotations

import uuid

import pytest

from launchdeck.control_api.domain.sealing import KeyRing, Sealed, UnreadableSecret

PROJECT = uuid.uuid4()


def test_a_sealed_value_is_not_the_plaintext_and_opens_again() -> None:
    """Ciphertext (with its 16-byte tag) and a fresh 96-bit nonce per value; the key id names
    the key without being it."""
    ring = KeyRing.from_secrets("first-secret-key-" + "x" * 32)
    one = ring.seal(PROJECT, "API_TOKEN", "hunter2-value")
    two = ring.seal(PROJECT, "API_TOKEN", "hunter2-value")
    assert b"hunter2" not in one.ciphertext
    assert len(one.ciphertext) == len("hunter2-value") + 16
    assert len(one.nonce) == 12
    assert one.nonce != two.nonce
    assert one.ciphertext != two.ciphertext
    assert one.key_id == ring.current.key_id
    assert len(one.key_id) == 16
    assert "first-secret" not in one.key_id
    assert ring.open(PROJECT, "API_TOKEN", one) == "hunter2-value"


def test_the_key_id_follows_the_secret() -> None:
    """The same secret gives the same key id (a restart reads what it wrote); another secret
    another id."""
    assert (
        KeyRing.from_secrets("a" * 40).current.key_id
        == KeyRing.from_secrets("a" * 40).current.key_id
    )
    assert (
        KeyRing.from_secrets("a" * 40).current.key_id
        != KeyRing.from_secrets("b" * 40).current.key_id
    )


def test_a_value_moved_to_another_row_does_not_open() -> None:
    """A ciphertext copied to another project or name fails to authenticate."""
    ring = KeyRing.from_secrets("k" * 40)
    sealed = ring.seal(PROJECT, "API_TOKEN", "value")
    with pytest.raises(UnreadableSecret, match="does not decrypt"):
        ring.open(uuid.uuid4(), "API_TOKEN", sealed)
    with pytest.raises(UnreadableSecret, match="does not decrypt"):
        ring.open(PROJECT, "OTHER", sealed)
    tampered = Sealed(sealed.nonce, sealed.ciphertext[:-1] + b"\0", sealed.key_id)
    with pytest.raises(UnreadableSecret):
        ring.open(PROJECT, "API_TOKEN", tampered)


def test_the_previous_key_still_opens_old_values() -> None:
    """After a rotation the ring seals under the new key and opens under both; without the
    previous key an old value is unreadable, and the error names its key id, never a value."""
    old_ring = KeyRing.from_secrets("old" * 20)
    old_value = old_ring.seal(PROJECT, "DB_PASSWORD", "pa55word")
    ring = KeyRing.from_secrets("new" * 20, "old" * 20)
    assert ring.key_ids == (ring.current.key_id, old_ring.current.key_id)
    assert ring.open(PROJECT, "DB_PASSWORD", old_value) == "pa55word"
    assert ring.seal(PROJECT, "DB_PASSWORD", "pa55word").key_id == ring.current.key_id
    with pytest.raises(UnreadableSecret, match=old_ring.current.key_id) as refused:
        KeyRing.from_secrets("new" * 20).open(PROJECT, "DB_PASSWORD", old_value)
    assert "pa55word" not in str(refused.value)
    # The same secret twice is one key.
    assert KeyRing.from_secrets("new" * 20, "new" * 20).previous == ()
