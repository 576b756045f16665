"""Bounded retries (`libs.retry`): how many tries, which errors, what is raised in the end."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from launchdeck.libs.retry import retrying


class Transient(Exception):
    """An error worth another try."""


class Refused(Transient):
    """A transient-looking error that retrying cannot fix."""


class Fatal(Exception):
    """An error outside the retried ones."""


class Flaky:
    """Fails with `errors` in turn (one per call), then answers "ok"; counts the calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def run(
    operation: Flaky,
    attempts: int = 3,
    give_up_on: tuple[type[BaseException], ...] = (),
    log_event: str | None = None,
) -> str:
    async for attempt in retrying(
        attempts=attempts,
        first_delay_s=0.001,
        max_delay_s=0.004,
        retry_on=(Transient,),
        give_up_on=give_up_on,
        log_event=log_event,
    ):
        with attempt:
            return await operation()
    raise AssertionError("unreachable: the last failed attempt raises")


async def test_retries_the_listed_errors_until_it_works() -> None:
    """Two transient failures, then success: three calls, the result comes back."""
    operation = Flaky(Transient("one"), Transient("two"))
    assert await run(operation, attempts=3) == "ok"
    assert operation.calls == 3


async def test_gives_up_after_attempts_and_reraises_the_last_error() -> None:
    """Exactly `attempts` calls, then the last error itself (not tenacity's RetryError)."""
    last = Transient("third")
    operation = Flaky(Transient("first"), Transient("second"), last, Transient("never"))
    with pytest.raises(Transient) as raised:
        await run(operation, attempts=3)
    assert raised.value is last
    assert operation.calls == 3


async def test_does_not_retry_other_errors() -> None:
    """An error outside `retry_on` is raised after the first call."""
    operation = Flaky(Fatal("boom"))
    with pytest.raises(Fatal, match="boom"):
        await run(operation, attempts=5)
    assert operation.calls == 1


async def test_give_up_on_wins_over_retry_on() -> None:
    """A subclass named in `give_up_on` (a refusal) is raised at once."""
    operation = Flaky(Refused("no"))
    with pytest.raises(Refused):
        await run(operation, attempts=5, give_up_on=(Refused,))
    assert operation.calls == 1


async def test_logs_a_warning_before_each_retry() -> None:
    """With `log_event`: one warning per sleep, naming the attempt and the error."""
    with capture_logs() as logs:
        assert await run(Flaky(Transient("one"), Transient("")), log_event="thing_retrying") == "ok"
    warnings = [(e["event"], e["attempt"], e["error"]) for e in logs if e["log_level"] == "warning"]
    assert warnings == [
        ("thing_retrying", 1, "Transient: one"),
        ("thing_retrying", 2, "Transient"),
    ]


def test_attempts_must_be_positive() -> None:
    """Zero attempts would never run the operation: refused."""
    with pytest.raises(ValueError, match="attempts"):
        retrying(attempts=0, first_delay_s=0.1, max_delay_s=1.0, retry_on=(Transient,))
