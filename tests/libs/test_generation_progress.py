"""`launchdeck.libs.generation.progress`: counts, a sliding-window rate and ETA, and events
throttled to a few per second with the final state always sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from launchdeck.libs.generation.progress import ProgressSnapshot, ProgressTracker


def test_counts_tokens_and_cost_add_up() -> None:
    tracker = ProgressTracker(10, started_at=100.0, done=2, tokens_in=5, cost_usd=Decimal("0.1"))
    tracker.record("done", now=101.0, tokens_in=10, tokens_out=20, cost_usd=Decimal("0.002"))
    tracker.record("failed", now=101.5)
    snap = tracker.snapshot(102.0)
    assert (snap.done, snap.failed, snap.total) == (3, 1, 10)
    assert (snap.tokens_in, snap.tokens_out, snap.cost_usd) == (15, 20, Decimal("0.102"))
    assert not snap.finished


def test_rate_is_over_the_sliding_window_and_eta_follows_it() -> None:
    """10 items/s for 60 s, then 2 items/s: after 30 s at the new pace the rate is 2/s."""
    tracker = ProgressTracker(10_000, started_at=0.0, window_s=30.0)
    assert tracker.snapshot(0.0).eta_s is None  # no rate yet
    now = 0.0
    for _ in range(600):
        now += 0.1
        tracker.record("done", now=now)
    snap = tracker.snapshot(now)
    assert snap.items_per_s == pytest.approx(10.0, rel=0.02)
    assert snap.eta_s == pytest.approx((10_000 - 600) / snap.items_per_s)
    for _ in range(60):
        now += 0.5
        tracker.record("done", now=now)
    assert tracker.snapshot(now).items_per_s == pytest.approx(2.0, rel=0.05)
    assert len(tracker._window) <= 30 / 0.25 + 2  # bounded at any rate


def test_the_rate_of_a_young_job_counts_from_its_start() -> None:
    """Two items in the first second is 2/s, not 2 per 30 s window."""
    tracker = ProgressTracker(100, started_at=50.0)
    tracker.record("done", now=50.4)
    tracker.record("done", now=50.9)
    assert tracker.snapshot(51.0).items_per_s == pytest.approx(2.0)


def test_events_are_throttled_and_the_final_state_is_always_sent() -> None:
    """10,000 items in one second: at most 4 events plus the final one."""
    tracker = ProgressTracker(10_000, started_at=0.0, max_per_s=4)
    emitted: list[ProgressSnapshot] = []
    if tracker.should_emit(0.0):
        emitted.append(tracker.snapshot(0.0))
    for i in range(10_000):
        now = (i + 1) / 10_000
        tracker.record("done", now=now)
        if tracker.should_emit(now):
            emitted.append(tracker.snapshot(now))
    assert len(emitted) <= 1 + 4 + 1
    assert emitted[-1].finished
    assert emitted[-1].done == 10_000
    assert emitted[-1].eta_s == 0.0
    assert not tracker.should_emit(2.0)  # nothing changed since


def test_a_held_back_change_goes_out_on_the_next_tick_and_unchanged_state_is_not_resent() -> None:
    """The caller's periodic tick sends the last state before a lull."""
    tracker = ProgressTracker(10, started_at=0.0, max_per_s=4)
    assert tracker.should_emit(0.0)  # the initial state
    assert not tracker.should_emit(0.1)  # nothing new
    tracker.record("done", now=0.1)
    assert not tracker.should_emit(0.1)  # within 250 ms of the last event
    assert tracker.should_emit(0.25)
    assert not tracker.should_emit(1.0)


def test_an_empty_or_resumed_finished_job_emits_its_final_state_once() -> None:
    tracker = ProgressTracker(3, started_at=0.0, done=2, failed=1)
    assert tracker.should_emit(0.0)
    assert not tracker.should_emit(10.0)
    assert ProgressTracker(0, started_at=0.0).snapshot(0.0).eta_s == 0.0
    with pytest.raises(ValueError, match="max_per_s > 0"):
        ProgressTracker(1, started_at=0.0, max_per_s=0)
