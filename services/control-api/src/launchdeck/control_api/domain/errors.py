"""Domain errors raised by the logic and storage modules; `problems.py` renders them for HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: `field` is a dotted path (`build.output_dir`, `items[2]`)."""

    field: str
    message: str


class DomainError(Exception):
    """Base: `status` and `title` say how HTTP presents it, `detail` (the message) says why."""

    status = 400
    title = "Bad Request"
    headers: dict[str, str] = {}

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(DomainError):
    status = 404
    title = "Not Found"


class Conflict(DomainError):
    """The request is valid but the current state does not allow it (duplicate name, …)."""

    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """The request is well-formed JSON but its content is not acceptable."""

    status = 422
    title = "Unprocessable Content"

    @classmethod
    def field(cls, field: str, message: str) -> Invalid:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="launchdeck"'}
