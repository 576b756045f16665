"""Keyset pagination: `?limit=&cursor=`, where a cursor is the sort key of the last item shown.

A cursor is opaque to clients (base64url of a small JSON array); a malformed one is a 422 on the
`cursor` field, never a 500. Keyset rather than OFFSET, so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from launchdeck.contracts.api import Page
from launchdeck.control_api.domain.errors import Invalid

R = TypeVar("R")
T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Sort keys that are Postgres `int` columns (build numbers): a number past it is no cursor of ours.
MAX_INT_KEY = 2**31 - 1
_NOT_OURS = "is not a cursor returned by this list"


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None


def page_request(request: web.Request) -> PageRequest:
    raw = request.query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise Invalid.field("limit", "must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid.field("limit", f"must be between 1 and {MAX_LIMIT}")
    cursor = request.query.get("cursor") or None
    return PageRequest(limit=limit, cursor=cursor)


def encode_cursor(*key: str | int | datetime | uuid.UUID) -> str:
    values: list[Any] = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    values = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise Invalid.field("cursor", _NOT_OURS) from None
    if not isinstance(values, list):
        raise Invalid.field("cursor", _NOT_OURS)
    return values


def decode_str_cursor(cursor: str) -> str:
    values = _decode(cursor)
    # NUL cannot be in a Postgres text value, so no name of ours contains it.
    if len(values) != 1 or not isinstance(values[0], str) or "\x00" in values[0]:
        raise Invalid.field("cursor", _NOT_OURS)
    return values[0]


def decode_int_cursor(cursor: str) -> int:
    values = _decode(cursor)
    if len(values) != 1 or type(values[0]) is not int or not 0 <= values[0] <= MAX_INT_KEY:
        raise Invalid.field("cursor", _NOT_OURS)
    return values[0]


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    values = _decode(cursor)
    try:
        at, row_id = values
        when, key = datetime.fromisoformat(at), uuid.UUID(row_id)
        if when.tzinfo is None:  # ours are timezone-aware, like the timestamptz they come from
            raise ValueError(at)
        # In UTC, as Postgres compares it: the calendar's edge shifted past year 1 or 9999
        # fails here rather than in the database.
        return when.astimezone(UTC), key
    except (TypeError, ValueError, OverflowError):
        raise Invalid.field("cursor", _NOT_OURS) from None


def paginate(
    rows: list[R], limit: int, cursor_of: Callable[[R], str], present: Callable[[R], T]
) -> Page[T]:
    """`rows` were fetched with `limit + 1`: the extra row only says another page exists."""
    shown = rows[:limit]
    next_cursor = cursor_of(shown[-1]) if len(rows) > limit and shown else None
    return Page(items=[present(r) for r in shown], next_cursor=next_cursor)
