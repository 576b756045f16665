"""The dashboard's session and its defences against cross-site requests.

The session is the user's API token itself, in the `ld_session` cookie: HttpOnly (no script
reads it), SameSite=Strict (no other site's page sends it), Secure over https. Each page checks
it the way the API checks a bearer token (`api.auth.check_token`), so a revoked token signs the
browser out within the token cache's second.

Every form that changes something carries `csrf_token`, an HMAC of the session token under the
service's secret key: a page of another site cannot know it. A POST whose Origin header names
another site is refused as well, before anything else is looked at.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from launchdeck.control_api.api.auth import (
    SESSION_COOKIE,
    check_token,
    grants,
    is_admin,
    same_origin,
)
from launchdeck.control_api.api.keys import SETTINGS
from launchdeck.control_api.dashboard.forms import Form
from launchdeck.control_api.domain.errors import Unauthorized
from launchdeck.libs.tokens import TokenClaims

CSRF_FIELD = "csrf_token"
_CSRF_CONTEXT = b"launchdeck-dashboard-csrf\x00"


@dataclass(frozen=True)
class Session:
    token: str
    claims: TokenClaims
    csrf: str

    def can(self, scope: str) -> bool:
        """The API would let this token do `scope` (`read`, `deploy`, `write`) on its project."""
        return grants(self.claims, scope)

    @property
    def admin(self) -> bool:
        return is_admin(self.claims)

    @property
    def name(self) -> str:
        return self.claims.subject


def csrf_for(secret_key: str, token: str) -> str:
    return hmac.new(secret_key.encode(), _CSRF_CONTEXT + token.encode(), hashlib.sha256).hexdigest()


async def current_session(request: web.Request) -> Session | None:
    """The signed-in user's session, or None (no cookie, or a token the API would refuse)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await session_of(request, token)


async def session_of(request: web.Request, token: str) -> Session | None:
    try:
        claims, _row = await check_token(request.app, token)
    except Unauthorized:
        return None
    return Session(token, claims, csrf_for(request.app[SETTINGS].secret_key, token))


def foreign_origin(request: web.Request) -> bool:
    """An Origin header that names another site (absent: an old or non-browser client, left to
    the CSRF token)."""
    return "Origin" in request.headers and not same_origin(request)


def csrf_refusal(session: Session, form: Form) -> str | None:
    """Why the form is refused, or None when its CSRF token is this session's."""
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not sent:
        return "the form lacks its CSRF token: reload the page and try again"
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        return "the form's CSRF token is not this session's: reload the page and try again"
    return None


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_session(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def clear_session(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=_secure(request)
    )
