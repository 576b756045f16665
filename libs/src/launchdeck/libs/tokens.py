"""API tokens: JWT HS256 with a `jti`, signed with the operator's secret key.

Minted by the control-api (and by `launchdeck dev` for the first admin token); verified by the
control-api on every request. Scopes: `admin`, or per project `read` / `deploy` / `write`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "launchdeck"


class InvalidToken(Exception):
    """The token is malformed, badly signed or expired (the message says which)."""


@dataclass(frozen=True)
class TokenClaims:
    jti: str
    subject: str
    scopes: tuple[str, ...]
    project_id: str | None
    expires_at: int | None


def mint(
    secret: str,
    *,
    subject: str,
    scopes: list[str],
    project_id: str | None = None,
    expires_in_s: int | None = None,
    jti: str | None = None,
) -> tuple[str, TokenClaims]:
    now = int(time.time())
    claims = TokenClaims(
        jti=jti or str(uuid.uuid4()),
        subject=subject,
        scopes=tuple(scopes),
        project_id=project_id,
        expires_at=now + expires_in_s if expires_in_s else None,
    )
    payload: dict[str, object] = {
        "iss": ISSUER,
        "sub": claims.subject,
        "jti": claims.jti,
        "iat": now,
        "scopes": list(claims.scopes),
    }
    if project_id:
        payload["project_id"] = project_id
    if claims.expires_at:
        payload["exp"] = claims.expires_at
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


# Tokens whose signature was verified, with their claims: checking an HS256 JWT with PyJWT
# costs about a fifth of a simple API read (it validates the base64 alphabet character by
# character in Python), and a client sends the same token on every request. Only the signature
# and the claims' shape are remembered; expiry is checked on every use, revocation is the
# caller's (the `api_tokens` row). Bounded: emptied when full.
_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str], TokenClaims] = {}


def verify(secret: str, token: str) -> TokenClaims:
    claims = _verified.get((secret, token))
    if claims is None:
        claims = _verify(secret, token)
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[(secret, token)] = claims
    elif claims.expires_at is not None and claims.expires_at <= time.time():
        raise InvalidToken("token expired")  # as PyJWT decides it (`exp` <= now)
    return claims


def _verify(secret: str, token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["jti", "sub", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("invalid token") from exc
    scopes = payload.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise InvalidToken("invalid token scopes")
    return TokenClaims(
        jti=str(payload["jti"]),
        subject=str(payload["sub"]),
        scopes=tuple(scopes),
        project_id=payload.get("project_id"),
        expires_at=payload.get("exp"),
    )


def digest(token: str) -> bytes:
    """What is kept of a token's value (for forensics): never the value itself."""
    return hashlib.sha256(token.encode()).digest()


async def register(
    conn: Any,
    claims: TokenClaims,
    *,
    name: str,
    created_by: str,
    token: str | None = None,
    revoked: bool = False,
) -> None:
    """Insert the control-api's `api_tokens` row of a token minted offline (the first admin
    token of `launchdeck dev` and of the control-api `token` command, test tokens), so every
    token in use is known and revocable: the API refuses a token whose jti has no row.

    Here rather than in the control-api because those offline paths are not the service.
    """
    await conn.execute(
        """INSERT INTO api_tokens
               (id, name, scopes, project_id, expires_at, token_sha256, created_by, revoked_at)
           VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7, CASE WHEN $8 THEN now() END)
           ON CONFLICT (id) DO NOTHING""",
        uuid.UUID(claims.jti),
        name,
        list(claims.scopes),
        uuid.UUID(claims.project_id) if claims.project_id else None,
        claims.expires_at,
        digest(token) if token is not None else None,
        created_by,
        revoked,
    )


async def is_registered_and_live(conn: Any, jti: str) -> bool:
    """Whether the token's row exists and is neither revoked nor expired."""
    try:
        token_id = uuid.UUID(jti)
    except ValueError:
        return False
    found: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND revoked_at IS NULL
                          AND (expires_at IS NULL OR expires_at > now()))""",
        token_id,
    )
    return found
