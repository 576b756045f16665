"""Riding out a dependency's outage in a loop that keeps retrying.

An `Outage` logs one warning when trouble starts (not one per failed try), spaces the tries with
bounded exponential backoff, and logs once when the dependency works again.
"""

from __future__ import annotations

import time

from launchdeck.libs.cancellation import pause
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)


class Outage:
    """The current outage (if any) of `what`, as seen by one retrying loop."""

    def __init__(
        self,
        what: str,
        *,
        first_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        **ids: str,
    ) -> None:
        self._what = what
        self._ids = ids
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._next_delay_s = first_delay_s
        self._since: float | None = None

    def failed(self, error: BaseException | str) -> None:
        """Record a failure; only the first one of an outage is logged."""
        if self._since is None:
            self._since = time.monotonic()
            log.warning("outage_began", what=self._what, error=describe_error(error), **self._ids)

    async def backoff(self, error: BaseException | str, *, max_wait_s: float | None = None) -> None:
        """Record a failure and wait before the next try (0.2 s, 0.4 s, … up to 5 s), at most
        `max_wait_s` (a caller with a deadline does not sleep past it)."""
        self.failed(error)
        delay = self._next_delay_s
        self._next_delay_s = min(delay * 2, self._max_delay_s)
        if max_wait_s is not None:
            delay = max(0.0, min(delay, max_wait_s))
        await pause(delay)

    @property
    def began_at(self) -> float | None:
        """When the current outage began (`time.monotonic()`), or None while there is none: a
        caller can say how long the dependency has been away (a gap in a build log, say)."""
        return self._since

    def over(self) -> None:
        """The dependency works again: log the end of the outage (if there was one), reset."""
        if self._since is not None:
            lasted_s = round(time.monotonic() - self._since, 1)
            log.info("outage_ended", what=self._what, lasted_s=lasted_s, **self._ids)
        self._since = None
        self._next_delay_s = self._first_delay_s


def describe_error(error: BaseException | str) -> str:
    """For a log line: the message, or the class name when the message is empty."""
    if isinstance(error, str):
        return error
    # Several nats-py errors have an empty str(); the class name says what happened.
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
