"""Which ticks of a schedule are due (`domain.cron`): five-field expressions checked, ticks in the
schedule's time zone across DST changes, and missed ticks collapsed into one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from launchdeck.control_api.domain import cron

PARIS = "Europe/Paris"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def take(expression: str, tz: str, after: datetime, n: int) -> list[datetime]:
    it = cron.ticks(expression, tz, after)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "must have 5 fields"),
        ("* * * * * *", "must have 5 fields"),
        ("61 * * * *", "is not a valid cron expression"),
        ("* * * * mon-xyz", "is not a valid cron expression"),
        ("", "must have 5 fields"),
        ("0 0 30 2 *", "never matches a date"),
    ],
)
def test_bad_expressions_are_refused(expression: str, message: str) -> None:
    """Anything but five fields croniter reads is a CronError saying what is wrong."""
    with pytest.raises(cron.CronError, match=message):
        cron.check_expression(expression)


def test_an_expression_is_normalised() -> None:
    """Extra spaces between fields are dropped (the stored form is canonical)."""
    assert cron.check_expression("  */5   *  * * 1-5 ") == "*/5 * * * 1-5"


def test_unknown_time_zone() -> None:
    with pytest.raises(cron.CronError, match="IANA"):
        cron.zone("Mars/Olympus_Mons")
    assert str(cron.zone(PARIS)) == PARIS


def test_a_daily_time_stays_local_across_spring_forward() -> None:
    """09:00 in Paris is 08:00 UTC in winter and 07:00 UTC once summer time began."""
    ticks = take("0 9 * * *", PARIS, utc(2026, 3, 27, 12), 3)
    assert ticks == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_a_wall_time_that_does_not_exist_fires_once_at_the_next_that_does() -> None:
    """02:30 does not exist in Paris on 29 March 2026 (02:00 → 03:00): it fires at 03:00 CEST
    (01:00 UTC) that day, once, and at 02:30 again the next day."""
    ticks = take("30 2 * * *", PARIS, utc(2026, 3, 28, 12), 2)
    assert ticks == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_a_repeated_wall_time_fires_once_on_fall_back() -> None:
    """02:30 happens twice in Paris on 25 October 2026 (CEST, then CET): a daily job runs
    once, at the first."""
    ticks = take("30 2 * * *", PARIS, utc(2026, 10, 24, 12), 2)
    assert ticks == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_an_every_hour_schedule_follows_elapsed_time_on_fall_back() -> None:
    """`*/30 * * * *` keeps firing every 30 minutes through the repeated hour."""
    ticks = take("*/30 * * * *", PARIS, utc(2026, 10, 24, 23, 50), 6)
    assert ticks == [utc(2026, 10, 24, 23, 50) + timedelta(minutes=10 + 30 * i) for i in range(6)]


def test_not_due_before_its_tick() -> None:
    assert cron.due("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 4)) is None


def test_due_on_its_tick() -> None:
    """A tick is due at its very time, with nothing missed."""
    due = cron.due("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 5))
    assert due == cron.Due(tick=utc(2026, 1, 1, 10, 5), missed=0, next=utc(2026, 1, 1, 10, 10))


def test_missed_ticks_collapse_into_the_latest() -> None:
    """Down from 10:05 to 10:27: the latest due tick (10:25) fires once, four are counted as
    missed, and the next is 10:30."""
    due = cron.due("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 27, 30))
    assert due == cron.Due(tick=utc(2026, 1, 1, 10, 25), missed=4, next=utc(2026, 1, 1, 10, 30))


def test_a_very_long_outage_is_still_one_tick() -> None:
    """A month of `* * * * *` missed: one tick (the latest), the count says "at least"."""
    now = utc(2026, 2, 1, 0, 0, 30)
    due = cron.due("* * * * *", "UTC", utc(2026, 1, 1), now)
    assert due is not None
    assert due.tick == utc(2026, 2, 1, 0, 0)
    assert due.missed_at_least
    assert due.missed == cron.MAX_COUNTED_MISSED
    assert due.next == utc(2026, 2, 1, 0, 1)


def test_seconds_field_for_fast_tests() -> None:
    """croniter's sixth field (seconds) works in the firing functions (tests use it)."""
    assert cron.next_tick("* * * * * */10", "UTC", utc(2026, 1, 1, 0, 0, 1)) == utc(
        2026, 1, 1, 0, 0, 10
    )
