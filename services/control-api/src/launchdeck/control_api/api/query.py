"""Typed query-string parameters: a bad value is a 422 naming the parameter, never a 500."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from launchdeck.control_api.domain.errors import Invalid


def query_int(
    request: web.Request,
    name: str,
    *,
    default: int,
    minimum: int,
    maximum: int = 2**63 - 1,
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid.field(name, "must be an integer") from None
    if value < minimum:
        raise Invalid.field(name, f"must be at least {minimum}")
    if value > maximum:
        raise Invalid.field(name, f"must be at most {maximum}")
    return value


_AGO = re.compile(r"(?P<n>\d{1,9})(?P<unit>[smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def query_since(request: web.Request, name: str = "since") -> datetime | None:
    """A point in time: RFC 3339 (`2026-11-22T05:00:00Z`; without an offset, UTC) or how long
    ago (`90s`, `10m`, `2h`, `1d`); None when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if match := _AGO.fullmatch(raw):
        try:
            return datetime.now(UTC) - timedelta(seconds=int(match["n"]) * _UNIT_S[match["unit"]])
        except OverflowError:  # before year 1: everything there is
            return datetime.min.replace(tzinfo=UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid.field(
            name, "must be an RFC 3339 time (2026-11-22T05:00:00Z) or a duration (10m, 2h)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
