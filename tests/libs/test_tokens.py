"""API tokens: what verifies, and every way a token is refused (with a message saying which)."""

from __future__ import annotations

import time

import jwt
import pytest

from launchdeck.libs.tokens import ALGORITHM, ISSUER, InvalidToken, mint, verify

SECRET = "tokens-test-secret-" + "x" * 64


def test_minted_claims_verify() -> None:
    token, claims = mint(
        SECRET, subject="ci", scopes=["read", "deploy"], project_id="p1", expires_in_s=60
    )
    verified = verify(SECRET, token)
    assert verified == claims
    assert verified.scopes == ("read", "deploy")
    assert verified.project_id == "p1"
    assert verified.expires_at is not None
    assert 55 <= verified.expires_at - time.time() <= 60
    assert len(verified.jti) == 36  # a UUID: what revocation will key on


def test_without_expiry_the_token_has_no_exp() -> None:
    token, claims = mint(SECRET, subject="admin", scopes=["admin"])
    assert claims.expires_at is None
    assert "exp" not in jwt.decode(token, SECRET, algorithms=[ALGORITHM], issuer=ISSUER)


def test_expired() -> None:
    payload = {"iss": ISSUER, "sub": "x", "jti": "j", "iat": 1, "exp": 2, "scopes": ["admin"]}
    with pytest.raises(InvalidToken, match="token expired"):
        verify(SECRET, jwt.encode(payload, SECRET, algorithm=ALGORITHM))


def forged(payload: dict[str, object], *, secret: str = SECRET, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


GOOD = {"iss": ISSUER, "sub": "x", "jti": "j", "iat": 1, "scopes": ["admin"]}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (forged(GOOD, secret="another-secret-" + "y" * 64), "invalid token"),
        (forged(GOOD, algorithm="HS512"), "invalid token"),  # the algorithm is pinned
        (forged({**GOOD, "iss": "someone-else"}), "invalid token"),
        (forged({k: v for k, v in GOOD.items() if k != "jti"}), "invalid token"),
        (forged({**GOOD, "scopes": "admin"}), "invalid token scopes"),
        (forged({**GOOD, "scopes": [1]}), "invalid token scopes"),
        ("not.a.jwt", "invalid token"),
        ("", "invalid token"),
    ],
)
def test_refused(token: str, message: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        verify(SECRET, token)
    assert str(caught.value) == message


def test_unsigned_token_is_refused() -> None:
    """`alg: none` (no signature) never verifies."""
    unsigned = jwt.encode(GOOD, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        verify(SECRET, unsigned)


def test_tampered_payload_is_refused() -> None:
    token, _ = mint(SECRET, subject="reader", scopes=["read"], project_id="p1")
    header, _, signature = token.split(".")
    _, admin_payload, _ = forged({**GOOD, "sub": "reader"}, secret="o" * 64).split(".")
    with pytest.raises(InvalidToken):
        verify(SECRET, f"{header}.{admin_payload}.{signature}")
