"""JSON in and out of handlers: typed request bodies (msgspec) and JSON responses."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from launchdeck.control_api.api.problems import invalid_from
from launchdeck.control_api.domain.errors import DomainError

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


async def read_json(request: web.Request, type_: type[T], *, empty_ok: bool = False) -> T:
    """Decode the body as `type_`: malformed JSON → 400, content that does not fit → 422.

    With `empty_ok`, an empty body means `{}` (every field of `type_` then needs a default).
    """
    body = await request.read()
    if not body.strip():
        if not empty_ok:
            raise DomainError("a JSON object body is required")
        body = b"{}"
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None
    except msgspec.DecodeError as exc:
        raise DomainError(f"malformed JSON: {exc}") from None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data), content_type="application/json")
