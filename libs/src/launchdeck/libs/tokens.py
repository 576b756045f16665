"""API tokens: JWT HS256 with a `jti`, signed with the operator's secret key.

Minted by the control-api (and by `launchdeck dev` for the first admin token); verified by the
control-api on every request. Scopes: `admin`, or per project `read` / `deploy` / `write`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

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


def verify(secret: str, token: str) -> TokenClaims:
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
