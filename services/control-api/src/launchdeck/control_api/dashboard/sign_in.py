"""Signing in with an API token (kept in the session cookie) and out again."""

from __future__ import annotations

from aiohttp import web

from launchdeck.control_api.dashboard.forms import text
from launchdeck.control_api.dashboard.guard import SIGN_IN
from launchdeck.control_api.dashboard.render import error_page, redirect, render
from launchdeck.control_api.dashboard.session import (
    clear_session,
    current_session,
    foreign_origin,
    session_of,
    set_session,
)

HOME = "/projects"


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if await current_session(request) is not None:
        return redirect(HOME)
    return render(request, "sign_in.html", None)


async def sign_in(request: web.Request) -> web.StreamResponse:
    # No session yet, so no CSRF token: another site's page could sign a browser in with the
    # attacker's token; its Origin header gives it away.
    if foreign_origin(request):
        return error_page(request, None, 403, "Forbidden", "a sign-in from another site is refused")
    token = text(await request.post(), "token")
    session = await session_of(request, token) if token else None
    if session is None:
        # The token is never echoed back into the page.
        return render(
            request,
            "sign_in.html",
            None,
            status=401,
            error="that token is not valid (unknown, revoked or expired)",
        )
    response = redirect(HOME)
    set_session(response, request, token)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    if foreign_origin(request):
        return error_page(
            request, None, 403, "Forbidden", "a form posted from another site is refused"
        )
    response = redirect(SIGN_IN)
    clear_session(response, request)
    return response
