"""`launchdeck.libs.generation.budget`: reserve before a call, settle after; a job never spends
more than its budget plus what the calls in flight (one per concurrency slot) used beyond their
estimates."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchdeck.libs.generation.budget import Budget, BudgetError, Reservation, Usage


def usd(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


def test_a_reservation_is_granted_only_while_spent_plus_reserved_plus_it_fits() -> None:
    """spent + reserved + estimate <= budget, for USD and tokens alike."""
    budget = Budget(budget_usd="1.00", budget_tokens=1000)
    first = budget.reserve(Usage(400, Decimal("0.40")))
    second = budget.reserve(Usage(400, Decimal("0.40")))
    assert first is not None
    assert second is not None
    assert budget.reserved == Usage(800, Decimal("0.80"))
    assert budget.reserve(Usage(100, Decimal("0.30"))) is None  # USD would be 1.10
    assert budget.exhausted  # a refusal is final: the job stops as budget_exceeded
    assert budget.reserve(Usage(1, Decimal(0))) is None
    budget.settle(first, Usage(350, Decimal("0.35")))
    budget.settle(second, Usage(0, Decimal(0)))  # failed without usage: released
    assert budget.spent == Usage(350, Decimal("0.35"))
    assert budget.reserved == Usage()
    assert budget.in_flight == 0


def test_the_token_limit_alone_stops_a_job_and_an_exact_fit_is_granted() -> None:
    budget = Budget(budget_tokens=100)
    reservation = budget.reserve(Usage(100, Decimal(5)))
    assert reservation is not None  # USD unlimited; exactly 100 tokens fits
    assert budget.exhausted  # nothing of the token limit is left while it is reserved
    budget.settle(reservation, Usage(60, Decimal(3)))
    assert not budget.exhausted
    assert budget.reserve(Usage(41, Decimal(0))) is None


def test_no_limits_grants_everything_and_a_resumed_spend_counts() -> None:
    """A resumed job starts from what it already spent."""
    unlimited = Budget()
    assert all(unlimited.reserve(Usage(10**9, Decimal(10**9))) for _ in range(10))
    resumed = Budget(budget_usd=Decimal(1), spent=Usage(5, Decimal("0.99")))
    assert resumed.reserve(Usage(1, Decimal("0.02"))) is None
    assert Budget(budget_usd=1, spent=Usage(0, Decimal(1))).exhausted


def test_misuse_is_an_error() -> None:
    with pytest.raises(BudgetError):
        Budget(budget_usd=-1)
    with pytest.raises(BudgetError):
        Budget(budget_tokens=-1)
    budget = Budget(budget_usd=1)
    reservation = budget.reserve(Usage(1, Decimal("0.1")))
    assert reservation is not None
    budget.settle(reservation, Usage())
    with pytest.raises(BudgetError, match="not open"):
        budget.settle(reservation, Usage())
    with pytest.raises(BudgetError):
        budget.settle(Reservation(99, Usage()), Usage())


calls = st.lists(
    st.tuples(
        st.integers(0, 2000),  # estimated tokens
        st.integers(0, 200_000),  # estimated micro-USD
        st.floats(0, 1),  # where the actual falls between 0 and estimate + max overshoot
        st.floats(0, 1),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    concurrency=st.integers(1, 8),
    budget_micro=st.integers(0, 3_000_000),
    budget_tokens=st.one_of(st.none(), st.integers(0, 30_000)),
    over_tokens=st.integers(0, 500),
    over_micro=st.integers(0, 50_000),
    calls=calls,
    order=st.lists(st.integers(0, 7), max_size=60),
)
def test_spend_never_exceeds_the_budget_by_more_than_one_call_in_flight_per_slot(
    concurrency: int,
    budget_micro: int,
    budget_tokens: int | None,
    over_tokens: int,
    over_micro: int,
    calls: list[tuple[int, int, float, float]],
    order: list[int],
) -> None:
    """Any interleaving of reserves and settles with at most `concurrency` calls in flight:
    spent <= budget + concurrency x (max actual - estimate)."""
    budget = Budget(budget_usd=usd(budget_micro), budget_tokens=budget_tokens)
    pending = iter(calls)
    settle_order = iter(order)
    in_flight: list[tuple[Reservation, Usage]] = []
    stopped = False
    while True:
        while not stopped and len(in_flight) < concurrency:
            call = next(pending, None)
            if call is None:
                break
            est_tokens, est_micro, t, u = call
            estimate = Usage(est_tokens, usd(est_micro))
            reservation = budget.reserve(estimate)
            if reservation is None:
                # Refused only when it truly does not fit.
                over = budget.spent + budget.reserved + estimate
                assert over.usd > usd(budget_micro) or (
                    budget_tokens is not None and over.tokens > budget_tokens
                )
                stopped = True
                break
            actual = Usage(
                round(t * (est_tokens + over_tokens)), usd(round(u * (est_micro + over_micro)))
            )
            in_flight.append((reservation, actual))
        if not in_flight:
            break
        reservation, actual = in_flight.pop(next(settle_order, 0) % len(in_flight))
        budget.settle(reservation, actual)
    assert budget.reserved == Usage()
    assert budget.spent.usd <= usd(budget_micro) + concurrency * usd(over_micro)
    if budget_tokens is not None:
        assert budget.spent.tokens <= budget_tokens + concurrency * over_tokens
    if stopped:
        assert budget.exhausted


def test_concurrent_tasks_share_one_budget_without_overspending() -> None:
    """64 asyncio workers, estimates that hold: the spend stays within the budget, and the job
    stops only when the next call would not fit beside those in flight."""

    async def run() -> tuple[Budget, int]:
        budget = Budget(budget_usd=Decimal("1.000000"), budget_tokens=50_000)
        rng = random.Random(7)
        calls = 0

        async def worker() -> None:
            nonlocal calls
            while True:
                reservation = budget.reserve(Usage(300, Decimal("0.003")))
                if reservation is None:
                    return
                calls += 1
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                budget.settle(reservation, Usage(rng.randint(100, 300), Decimal("0.002")))

        await asyncio.gather(*(worker() for _ in range(64)))
        return budget, calls

    budget, calls = asyncio.run(run())
    assert budget.exhausted
    assert budget.in_flight == 0
    assert budget.spent.usd <= Decimal(1)
    assert budget.spent.tokens <= 50_000
    assert budget.spent.usd == Decimal("0.002") * calls
    # Not stopped early: the refused call did not fit beside at most 63 others in flight.
    assert budget.spent.tokens > 50_000 - 64 * 300 or budget.spent.usd > Decimal("0.808")
