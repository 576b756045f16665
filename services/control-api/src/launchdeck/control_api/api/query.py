"""Typed query-string parameters: a bad value is a 422 naming the parameter, never a 500."""

from __future__ import annotations

from aiohttp import web

from launchdeck.control_api.domain.errors import Invalid


def query_int(request: web.Request, name: str, *, default: int, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid.field(name, "must be an integer") from None
    if value < minimum:
        raise Invalid.field(name, f"must be at least {minimum}")
    return value
