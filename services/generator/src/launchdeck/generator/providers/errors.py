"""Provider errors, classified once at the HTTP boundary so callers never inspect status codes.

`TransientError` is worth retrying (the same request may succeed later); `PermanentError` is not
(bad key, unknown model, malformed request): retrying it only burns time and budget.
"""

from __future__ import annotations


class ProviderError(Exception):
    """`reason` is readable and safe to store and log: trimmed, with the API key redacted."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TransientError(ProviderError):
    """Timeouts, 408/429/5xx, connection errors, malformed answers, invalid JSON when JSON was
    asked. `retry_after_s` is the provider's Retry-After, when it sent one."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason, status=status)
        self.retry_after_s = retry_after_s

    @property
    def overload(self) -> bool:
        """The provider says it is saturated: the concurrency limiter should back off."""
        return self.status in (429, 503)


class PermanentError(ProviderError):
    """401, 403, 404 (model not found), 400 and other 4xx: the request itself is wrong."""
