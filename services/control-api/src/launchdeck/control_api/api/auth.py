"""Authentication (bearer JWT) and authorisation (scopes) of API requests.

Every route but the probes (`/health`, `/ready`, `/metrics`) and the git-host webhooks (which
carry their own HMAC signature) needs a token, as `Authorization: Bearer <jwt>` or, for
WebSocket viewers that cannot set headers, `?token=<jwt>`. The verified claims are stored on the
request under `PRINCIPAL`; handlers call `require_scope` once they know the project involved.

Scopes: `admin` passes everything; otherwise a token belongs to one project and holds some of
`read`, `deploy`, `write`. Another project's resources answer 404, not 403, so a scoped token
cannot probe which projects exist.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.api.keys import SETTINGS
from launchdeck.control_api.domain.errors import Forbidden, NotFound, Unauthorized
from launchdeck.libs.tokens import InvalidToken, TokenClaims, verify

PRINCIPAL = web.RequestKey("principal", TokenClaims)

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/metrics"})
PUBLIC_PREFIXES = ("/api/v1/hooks/",)

ADMIN = "admin"
# A scope is granted by itself or by a stronger one.
_GRANTED_BY: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "deploy", "write"}),
    "deploy": frozenset({"deploy", "write"}),
    "write": frozenset({"write"}),
}


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    return request.query.get("token") or None


def authenticate(request: web.Request) -> TokenClaims:
    token = request_token(request)
    if token is None:
        raise Unauthorized("a bearer token is required (Authorization header or ?token=)")
    try:
        # The api_tokens table (revocation by jti, last_used_at) plugs in here.
        return verify(request.app[SETTINGS].secret_key, token)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_public(request.path):
        request[PRINCIPAL] = authenticate(request)
    return await handler(request)


def principal(request: web.Request) -> TokenClaims:
    return request[PRINCIPAL]


def is_admin(claims: TokenClaims) -> bool:
    return ADMIN in claims.scopes


def require_admin(request: web.Request) -> None:
    if not is_admin(principal(request)):
        raise Forbidden("this operation needs an admin token")


def project_restriction(request: web.Request) -> uuid.UUID | None:
    """The only project this token may see, or None for an admin token."""
    claims = principal(request)
    if is_admin(claims):
        return None
    try:
        return uuid.UUID(claims.project_id or "")
    except ValueError:
        raise Forbidden("this token is not bound to a project") from None


def require_scope(
    request: web.Request,
    project_id: uuid.UUID | str,
    scope: str,
    *,
    not_found: str = "no such resource",
) -> None:
    """Allow the request on `project_id` with `scope` (`read`, `deploy` or `write`), or raise.

    A token of another project gets `NotFound(not_found)`: the same answer as a missing resource.
    """
    claims = principal(request)
    if is_admin(claims):
        return
    if claims.project_id is None or claims.project_id != str(project_id):
        raise NotFound(not_found)
    if not _GRANTED_BY[scope] & set(claims.scopes):
        raise Forbidden(f"this token lacks the {scope!r} scope")
