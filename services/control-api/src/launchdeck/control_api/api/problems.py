"""RFC 9457 `application/problem+json` errors, and the middleware that makes every error one.

Whatever a handler raises leaves as a problem document: domain errors with their status,
aiohttp's HTTP exceptions (unknown route 404, wrong method 405, body too large 413) with theirs,
malformed JSON as 400, a body that does not fit the request type as 422 naming the field, a
dependency that does not answer (NATS, a stream electing a leader, PostgreSQL) as 503 with
`Retry-After`, and anything unexpected as a bare 500 whose details go to the log only, never to
the client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import asyncpg
import msgspec
import nats.errors
import nats.js.errors
from aiohttp import web
from aiohttp.typedefs import Handler

from launchdeck.contracts.api import PROBLEM_CONTENT_TYPE, Problem, ProblemField
from launchdeck.control_api.domain.errors import DomainError, FieldError, Invalid
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

# A dependency that is away for now (the request itself may be fine): 503, try again later.
# nats-py raises these while reconnecting or when a stream has no leader (no responders, 503,
# or no answer in time); asyncpg and the socket layer when Postgres is unreachable.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # A session cut by a server shutting down (pg_ctl stop -m fast, a crash, a failover).
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
RETRY_AFTER_S = 5

_encoder = msgspec.json.Encoder()


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    problem = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=[ProblemField(e.field, e.message) for e in errors or []],
    )
    response = web.Response(status=status, body=_encoder.encode(problem), headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


# msgspec reports the location as a JSON path suffix: "... - at `$.build.timeout_s`".
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_REGEX = re.compile(r"^Expected `str` matching regex .*$")

# Friendlier wording than "matching regex …", for every field with a pattern (each also
# refuses control characters: `contracts.api.NO_CONTROL`).
_GIT_REF_HINT = (
    "must be a git branch, tag or commit: no spaces or control characters, no leading '-', "
    "no '..', none of ~ ^ : ? * [ \\"
)
_NO_CONTROL_HINT = "must not contain control characters (NUL, tab, newline, …)"
_RELATIVE_PATH_HINT = (
    "must be a path inside the repository: relative, without a '..' component or control characters"
)
PATTERN_HINTS: dict[str, str] = {
    "name": (
        "must be a slug: lowercase letters, digits and '-', starting with a letter or digit, "
        "at most 63 characters"
    ),
    "branch": _GIT_REF_HINT,
    "ref": _GIT_REF_HINT,
    "domains": "must be a lowercase host name such as www.example.com",
    "repo_url": _NO_CONTROL_HINT,
    "install_command": _NO_CONTROL_HINT,
    "build_command": _NO_CONTROL_HINT,
    "start_command": _NO_CONTROL_HINT,
    "root_dir": _RELATIVE_PATH_HINT,
    "output_dir": _RELATIVE_PATH_HINT,
    "health_path": "must be a URL path: starting with '/', without spaces or control characters",
    "channel": _NO_CONTROL_HINT,
}
_INDEX = re.compile(r"\[\d+\]$")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field_error(exc: msgspec.ValidationError) -> FieldError:
    """Turn msgspec's message into a field path (`build.timeout_s`, `domains[1]`) and a reason."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    message = match["message"]
    path = (match["path"] or "").lstrip(".")
    if missing := _MISSING.match(message):
        return FieldError(_join(path, missing["name"]), "is required")
    if unknown := _UNKNOWN.match(message):
        return FieldError(_join(path, unknown["name"]), "is not a known field")
    leaf = _INDEX.sub("", path.rsplit(".", 1)[-1])  # `domains[1]` → `domains`
    if _REGEX.match(message) and leaf in PATTERN_HINTS:
        message = PATTERN_HINTS[leaf]
    return FieldError(path or "body", message)


def invalid_from(exc: msgspec.ValidationError) -> Invalid:
    error = field_error(exc)
    return Invalid(f"{error.field}: {error.message}", [error])


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "www-authenticate"}}
    detail: str | None
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    elif isinstance(exc, web.HTTPNotFound) and exc.text in (None, "404: Not Found"):
        detail = f"no resource at {request.path}"
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        detail = f"the body is larger than {request.client_max_size} bytes, the most this API reads"
        return problem_response(413, "Content Too Large", detail)
    else:
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
    return problem_response(exc.status, exc.reason, detail, headers=headers)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return problem_response(
            exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like stay what they are
        return _from_http_exception(request, exc)
    except msgspec.ValidationError as exc:
        invalid = invalid_from(exc)
        return problem_response(422, invalid.title, invalid.detail, errors=invalid.errors)
    except msgspec.DecodeError as exc:
        return problem_response(400, "Bad Request", f"malformed JSON: {exc}")
    except asyncio.CancelledError:
        raise
    except UNAVAILABLE_ERRORS as exc:
        log.warning("request_dependency_unavailable", path=request.path, error=repr(exc))
        return problem_response(
            503,
            "Service Unavailable",
            "a service the API depends on (NATS or PostgreSQL) did not answer; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred")
