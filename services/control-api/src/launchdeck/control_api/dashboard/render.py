"""Rendering pages: the Jinja2 environment (autoescaped, strict about unknown names), the
headers every page carries, and the error page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from launchdeck.control_api.dashboard.session import Session

# Scripts and styles come only from /static (no inline script runs), sockets only to this
# origin, and no other site may frame a page (clickjacking the write buttons).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A timestamp for people: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def short(value: object) -> str:
    return str(value)[:8]


def setup_templates(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("launchdeck.control_api.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters={"when": when, "short": short},
    )


def secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: web.Request,
    template: str,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    context.setdefault("error", None)
    context["session"] = session
    context["csrf"] = session.csrf if session else ""
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    secured(response)
    return response


def error_page(
    request: web.Request, session: Session | None, status: int, title: str, detail: str
) -> web.Response:
    return render(request, "error.html", session, status=status, title=title, error=detail)


def redirect(location: str) -> web.Response:
    """See Other: after a form post the browser GETs the next page (reloading it posts nothing)."""
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})
