"""Reserve-then-settle accounting of a job's budget in USD and/or tokens.

Before a call the executor reserves an estimate (`pricing.estimate_call`: an overestimate of
the prompt, plus `max_tokens` out); after it, it settles the reservation with the provider's
actual usage. A reservation is granted only if, for every limit that is set,

    spent + reserved + estimate <= budget

and refused otherwise (`reserve` returns None): the job stops as `budget_exceeded`, and calls
already in flight finish and settle. Spending can therefore exceed the budget only by what calls
in flight used beyond their estimates: at most `concurrency * max(actual - estimate)` (zero when
estimates hold), "one call in flight per slot" at worst.

Within one process the methods are plain synchronous code (no `await` inside), so each runs
atomically in the event loop and concurrent tasks cannot both pass the check. That is enough:
one generator runs a given job at a time (the work queue delivers the job's command to one
consumer, kept by heartbeats), so the job's budget lives in that process. Nothing is reserved in
the database: the control-api adds each item's actual usage to the job's spent totals with every
settle, and a resumed job (a redelivery after a crash, another generator) starts a new `Budget`
from those totals (`spent`). A crash loses the reservations of calls in flight (never spent)
and the usage of items answered but not yet settled (at most the settler's last 100 ms): those
were paid, are not in the totals, and are called again on resume — the one bounded way a job
can spend more than its totals say (docs/architecture.md, "Generation jobs: the pure rules").
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from launchdeck.libs.generation.pricing import ZERO, to_decimal


@dataclass(frozen=True)
class Usage:
    """Tokens (input + output) and USD, of one call or of a job."""

    tokens: int = 0
    usd: Decimal = ZERO

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens + other.tokens, self.usd + other.usd)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.tokens - other.tokens, self.usd - other.usd)


@dataclass(frozen=True)
class Reservation:
    id: int
    estimate: Usage


class BudgetError(ValueError):
    """A misuse: a limit below 0, or a reservation settled twice or not from this budget."""


class Budget:
    """The budget of one job. `None` limits are unlimited (then every reservation is granted
    and the object only adds up the spend). `spent` starts from what a resumed job already
    spent."""

    def __init__(
        self,
        *,
        budget_usd: Decimal | float | int | str | None = None,
        budget_tokens: int | None = None,
        spent: Usage = Usage(),
    ) -> None:
        self.budget_usd = None if budget_usd is None else _limit_usd(budget_usd)
        if budget_tokens is not None and (isinstance(budget_tokens, bool) or budget_tokens < 0):
            raise BudgetError("budget_tokens must be ≥ 0")
        self.budget_tokens = budget_tokens
        self._spent = spent
        self._reserved = Usage()
        self._open: dict[int, Usage] = {}
        self._ids = itertools.count(1)
        self._refused = False

    @property
    def spent(self) -> Usage:
        return self._spent

    @property
    def reserved(self) -> Usage:
        return self._reserved

    @property
    def in_flight(self) -> int:
        return len(self._open)

    @property
    def exhausted(self) -> bool:
        """True once a reservation was refused (sticky: the job stops), or while spent +
        reserved leaves nothing of a limit."""
        return self._refused or not self._fits(Usage(), strict=True)

    def _fits(self, estimate: Usage, *, strict: bool = False) -> bool:
        total = self._spent + self._reserved + estimate
        if self.budget_usd is not None and (
            total.usd >= self.budget_usd if strict else total.usd > self.budget_usd
        ):
            return False
        if self.budget_tokens is None:
            return True
        if strict:
            return total.tokens < self.budget_tokens
        return total.tokens <= self.budget_tokens

    def reserve(self, estimate: Usage) -> Reservation | None:
        """Reserve `estimate` if spent + reserved + estimate stays within every limit; None
        (and `exhausted` from then on) otherwise."""
        if self._refused or not self._fits(estimate):
            self._refused = True
            return None
        reservation = Reservation(next(self._ids), estimate)
        self._open[reservation.id] = estimate
        self._reserved = self._reserved + estimate
        return reservation

    def settle(self, reservation: Reservation, actual: Usage) -> None:
        """Release the reservation and add the actual usage (`Usage()` for a call that failed
        without the provider reporting any)."""
        estimate = self._open.pop(reservation.id, None)
        if estimate is None:
            raise BudgetError(f"reservation {reservation.id} is not open")
        self._reserved = self._reserved - estimate
        self._spent = self._spent + actual


def _limit_usd(value: Any) -> Decimal:
    try:
        return to_decimal(value, "budget_usd")
    except ValueError as exc:
        raise BudgetError(str(exc)) from None
