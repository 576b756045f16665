"""What every dashboard handler goes through: a signed-in session (else the sign-in page), on a
POST the same-site and CSRF checks, and the API's refusals turned into an error page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.render import error_page, redirect
from launchdeck.control_api.dashboard.session import (
    Session,
    csrf_refusal,
    current_session,
    foreign_origin,
)

SIGN_IN = "/sign-in"

PageHandler = Callable[[web.Request, Session, Api], Awaitable[web.StreamResponse]]


def signed_in(handler: PageHandler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and foreign_origin(request):
            return error_page(
                request, None, 403, "Forbidden", "a form posted from another site is refused"
            )
        session = await current_session(request)
        if session is None:
            return redirect(SIGN_IN)
        if request.method == "POST":
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:  # aiohttp's bound on a form, uploads included
                detail = f"the form is larger than {request.client_max_size:,} bytes"
                return error_page(request, session, 413, "Content Too Large", detail)
            refusal = csrf_refusal(session, form)
            if refusal is not None:
                return error_page(request, session, 403, "Forbidden", refusal)
        try:
            return await handler(request, session, Api(request, session.token))
        except ApiError as exc:
            return error_page(request, session, exc.status, exc.title, exc.detail)

    return guarded
