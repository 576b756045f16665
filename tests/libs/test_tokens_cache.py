"""Verified tokens are remembered (signature checks are costly), but never past their expiry,
and a token signed with another key is not taken for a remembered one."""

from __future__ import annotations

import pytest

from launchdeck.libs import tokens
from launchdeck.libs.tokens import InvalidToken, mint, verify

SECRET = "s" * 32


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified once, then used after its `exp`: refused as expired, as an unseen one would be."""
    token, claims = mint(SECRET, subject="ci", scopes=["admin"], expires_in_s=60)
    assert verify(SECRET, token) == claims
    assert verify(SECRET, token) == claims  # from memory
    assert claims.expires_at is not None
    later = claims.expires_at + 1
    monkeypatch.setattr("launchdeck.libs.tokens.time.time", lambda: float(later))
    with pytest.raises(InvalidToken, match="expired"):
        verify(SECRET, token)


def test_remembering_is_per_key() -> None:
    """A token verified under one key is still refused under another."""
    token, _ = mint(SECRET, subject="ci", scopes=["admin"])
    verify(SECRET, token)
    with pytest.raises(InvalidToken):
        verify("k" * 32, token)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its size the memory starts over instead of growing."""
    monkeypatch.setattr(tokens, "_VERIFIED_MAX", 3)
    monkeypatch.setattr(tokens, "_verified", {})
    for i in range(7):
        token, claims = mint(SECRET, subject=f"t{i}", scopes=["admin"])
        assert verify(SECRET, token) == claims
        assert len(tokens._verified) <= 3
