"""Authentication (bearer JWT) and authorisation (scopes) of API requests.

Every route but the probes (`/health`, `/ready`, `/metrics`) and the git-host webhooks (which
carry their own HMAC signature) needs a token, as `Authorization: Bearer <jwt>` or, for
WebSocket viewers that cannot set headers, `?token=<jwt>`. The verified claims are stored on the
request under `PRINCIPAL`; handlers call `require_scope` once they know the project involved.

The dashboard (`launchdeck.control_api.dashboard`) keeps a signed-in user's token in the
`ld_session` cookie. That cookie is accepted only on the WebSocket routes (a browser cannot set
headers on a WebSocket), and only from a page of this very site (the Origin header names the Host):
the JSON routes ignore it, so they offer no cross-site request forgery surface. The dashboard's
own pages (routes named `dashboard.*`) check that cookie themselves and call the API with it.

Scopes: `admin` passes everything; otherwise a token belongs to one project and holds some of
`read`, `deploy`, `write`. Another project's resources answer 404, not 403, so a scoped token
cannot probe which projects exist.

A verified signature is not enough: the token's `api_tokens` row (by `jti`) must exist and be
neither revoked nor expired (`domain.tokens`). Rows are cached per process for at most
`CACHE_TTL_S` (1 s), which bounds how long a revoked token keeps working on any replica; the
claims used are the row's. `require_scope` notes the project on the request for the audit log.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.api.keys import POOL, SETTINGS
from launchdeck.control_api.domain.errors import Forbidden, NotFound, Unauthorized
from launchdeck.control_api.domain.tokens import (
    TokenCache,
    TokenRefused,
    UsageRecorder,
)
from launchdeck.control_api.domain.tokens import authenticate as check_token_row
from launchdeck.control_api.store import tokens as token_store
from launchdeck.control_api.store.tokens import TokenRow
from launchdeck.libs.tokens import InvalidToken, TokenClaims, verify

PRINCIPAL = web.RequestKey("principal", TokenClaims)
# The token's row (id and name, for the audit log).
TOKEN = web.RequestKey("token", TokenRow)
# The project a request acted on, noted by `require_scope` for the audit log.
AUDIT_PROJECT = web.RequestKey("audit_project", uuid.UUID)
TOKEN_CACHE = web.AppKey("token_cache", TokenCache)
TOKEN_USAGE = web.AppKey("token_usage", UsageRecorder)

# The API's description (`api.openapi`) is public too: it tells nothing a caller cannot learn by
# calling, and tools read it before they hold a token.
PUBLIC_PATHS = frozenset(
    {"/", "/health", "/ready", "/metrics", "/api/v1/openapi.json", "/api/docs"}
)
PUBLIC_PREFIXES = ("/api/v1/hooks/",)

# The dashboard's session cookie (its value is the user's API token) and the only routes that
# accept it: the WebSocket handshakes, which browsers cannot give an Authorization header.
SESSION_COOKIE = "ld_session"
COOKIE_ROUTES = frozenset(
    {"/api/v1/builds/{id}/logs/ws", "/api/v1/projects/{id}/logs/ws", "/api/v1/ws"}
)
# Routes named with this prefix are the dashboard's pages: they check the session cookie
# themselves, and every change they make goes through the API with the session's token.
OWN_SESSION_PREFIX = "dashboard."

ADMIN = "admin"
# A scope is granted by itself or by a stronger one.
_GRANTED_BY: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "deploy", "write"}),
    "deploy": frozenset({"deploy", "write"}),
    "write": frozenset({"write"}),
}


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def has_own_session(request: web.Request) -> bool:
    """A dashboard page: its handler checks the session cookie (`dashboard.session`)."""
    name = request.match_info.route.name
    return name is not None and name.startswith(OWN_SESSION_PREFIX)


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    if token := request.query.get("token"):
        return token
    return _session_cookie(request)


def same_origin(request: web.Request) -> bool:
    """The request's Origin header names this site (the Host the browser asked for)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == request.host.lower()


def _session_cookie(request: web.Request) -> str | None:
    """The dashboard session's token, on a WebSocket route opened by this site's pages only.

    SameSite=Strict already keeps the cookie off other sites' requests; the Origin check also
    refuses a page of another origin on the same site (another port, a sibling app)."""
    token = request.cookies.get(SESSION_COOKIE)
    resource = request.match_info.route.resource
    if not token or resource is None or resource.canonical not in COOKIE_ROUTES:
        return None
    if not same_origin(request):
        raise Forbidden("the session cookie is accepted only from this site's own pages")
    return token


def setup_token_checks(app: web.Application) -> None:
    """The per-process token cache and `last_used_at` recorder, over the app's pool."""

    async def fetch(token_id: uuid.UUID) -> TokenRow | None:
        async with app[POOL].acquire() as conn:
            return await token_store.get(conn, token_id)

    async def write(uses: dict[uuid.UUID, datetime]) -> None:
        async with app[POOL].acquire() as conn:
            await token_store.touch(conn, uses)

    async def drain(app: web.Application) -> None:
        await app[TOKEN_USAGE].drain()

    app[TOKEN_CACHE] = TokenCache(fetch)
    app[TOKEN_USAGE] = UsageRecorder(write)
    app.on_cleanup.append(drain)


async def authenticate(request: web.Request) -> tuple[TokenClaims, TokenRow]:
    """The token's claims (as its row states them) and row; Unauthorized when there is no
    token, a bad one, or one whose row is unknown, revoked or expired."""
    token = request_token(request)
    if token is None:
        raise Unauthorized("a bearer token is required (Authorization header or ?token=)")
    return await check_token(request.app, token)


async def check_token(app: web.Application, token: str) -> tuple[TokenClaims, TokenRow]:
    """`authenticate` for a token in hand (the dashboard's session); Unauthorized if refused."""
    try:
        claims = verify(app[SETTINGS].secret_key, token)
        row = await check_token_row(app[TOKEN_CACHE], claims)
    except (InvalidToken, TokenRefused) as exc:
        raise Unauthorized(str(exc)) from None
    app[TOKEN_USAGE].used(row.id)
    # The row is the authority (the claims were signed from it).
    claims = TokenClaims(
        jti=str(row.id),
        subject=row.name,
        scopes=tuple(row.scopes),
        project_id=str(row.project_id) if row.project_id else None,
        expires_at=claims.expires_at,
    )
    return claims, row


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_public(request.path) and not has_own_session(request):
        request[PRINCIPAL], request[TOKEN] = await authenticate(request)
    return await handler(request)


async def recheck(request: web.Request) -> None:
    """Check the token of a long-lived request again (each subscription on a WebSocket), so a
    revoked or expired token opens nothing more (Unauthorized) within the cache's second."""
    request[PRINCIPAL], request[TOKEN] = await authenticate(request)


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
    request[AUDIT_PROJECT] = uuid.UUID(str(project_id))
    if is_admin(claims):
        return
    if claims.project_id is None or claims.project_id != str(project_id):
        raise NotFound(not_found)
    if not grants(claims, scope):
        raise Forbidden(f"this token lacks the {scope!r} scope")


def grants(claims: TokenClaims, scope: str) -> bool:
    """The token holds `scope` (or a stronger one) on its project, or is an admin token."""
    return is_admin(claims) or bool(_GRANTED_BY[scope] & set(claims.scopes))
