"""Bounded retries of one operation, with one backoff policy for the whole platform.

A publish or an upload that fails for a moment (a reconnect, a lost acknowledgement) deserves a
few more tries, spaced out and then given up, so the caller can fail the job and let its own
redelivery take over. Every such loop is written the same way, over tenacity:

    async for attempt in retrying(attempts=5, first_delay_s=0.2, max_delay_s=2.0,
                                  retry_on=(nats.errors.Error, TimeoutError)):
        with attempt:
            await js.publish(...)

Sleep n (after failed try n) is min(first_delay_s * 2**(n-1), max_delay_s) plus a random jitter
of up to first_delay_s, so clients failing together do not retry in lockstep. After `attempts`
tries the last error is raised as it was (not wrapped in tenacity's RetryError); an error outside
`retry_on` (or inside `give_up_on`) is raised at once.

Loops that retry forever (consumers riding out an outage) use `outage.Outage` instead, and
publishes on a job's path, which retry for as long as the job's deadline allows rather than a
fixed number of tries, `publish.until_deadline`.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from launchdeck.libs.logging import get_logger
from launchdeck.libs.outage import describe_error

log = get_logger(__name__)

ExceptionTypes = tuple[type[BaseException], ...]


def retrying(
    *,
    attempts: int,
    first_delay_s: float,
    max_delay_s: float,
    retry_on: ExceptionTypes,
    give_up_on: ExceptionTypes = (),
    log_event: str | None = None,
) -> tenacity.AsyncRetrying:
    """At most `attempts` tries, retrying errors of `retry_on` except those of `give_up_on`
    (e.g. a refusal that is a subclass of a transient error). With `log_event`, a warning of that
    name is logged before each sleep (the attempt, the error, the delay)."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    retry: tenacity.retry_base = tenacity.retry_if_exception_type(retry_on)
    if give_up_on:
        retry = retry & tenacity.retry_if_not_exception_type(give_up_on)
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=first_delay_s, max=max_delay_s)
        + tenacity.wait_random(0, first_delay_s),
        retry=retry,
        reraise=True,
        before_sleep=_warn(log_event) if log_event else None,
    )


def _warn(event: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            event,
            attempt=state.attempt_number,
            error=describe_error(error) if error is not None else None,
            retry_in_s=round(state.upcoming_sleep, 2),
        )

    return before_sleep
