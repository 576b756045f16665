"""JSON in and out of handlers: typed request bodies (msgspec) and JSON responses.

Whatever bytes a client sends, decoding ends in a 4xx problem, never a 500: a body past
`MAX_BODY_BYTES` is a 413 (aiohttp refuses to read it), bytes that are not UTF-8 or not JSON
(or JSON nested past what the decoder's recursion allows) a 400, and a document that does not
fit the request type a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from launchdeck.control_api.api.problems import invalid_from
from launchdeck.control_api.domain.errors import DomainError

T = TypeVar("T")

# The largest request body the API reads (`web.Application(client_max_size=...)`): the biggest
# request type (a project with 100 domains, a 64 KiB env value) fits many times over.
MAX_BODY_BYTES = 1024 * 1024

_encoder = msgspec.json.Encoder()


def decode_body(body: bytes, type_: type[T]) -> T:
    """Decode JSON `body` as `type_`: not JSON → 400 (DomainError), not fitting → 422 (Invalid)."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None
    except msgspec.DecodeError as exc:
        raise DomainError(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:
        # msgspec reads strings as UTF-8 and lets the codec's error through.
        raise DomainError("the body is not valid UTF-8") from None
    except RecursionError:
        raise DomainError("malformed JSON: nested too deeply") from None


async def read_json(request: web.Request, type_: type[T], *, empty_ok: bool = False) -> T:
    """Decode the body as `type_`: malformed JSON → 400, content that does not fit → 422.

    With `empty_ok`, an empty body means `{}` (every field of `type_` then needs a default).
    """
    body = await request.read()
    if not body.strip():
        if not empty_ok:
            raise DomainError("a JSON object body is required")
        body = b"{}"
    return decode_body(body, type_)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data), content_type="application/json")
