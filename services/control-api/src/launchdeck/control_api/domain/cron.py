"""Which ticks of a cron schedule are due: pure functions of an expression, a time zone and times.

Ticks are computed by croniter in the schedule's own time zone, so `0 9 * * *` in Europe/Paris
is 09:00 in Paris in winter and in summer. Around a DST change, as Vixie cron does:
- spring forward: a wall time that does not exist that day (02:30) fires at the first one that
  does (03:00), once;
- fall back: a wall time that happens twice (02:30) fires once — unless the hour field is `*`
  (`*/30 * * * *`): then the schedule follows elapsed time and the repeated hour fires again.

A schedule that was not evaluated for a while (every replica down) fires once for the latest
due tick only; the ticks before it are counted (`Due.missed`), not made up one by one.

The API accepts five fields; these functions take whatever croniter reads, including its sixth
(seconds) field, which the tests use to run a schedule every few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

CRON_FIELDS = 5
# Missed ticks are counted one by one up to this many (an outage of a week of `* * * * *`);
# past it, the latest due tick is found directly and the count says "at least".
MAX_COUNTED_MISSED = 1000


class CronError(ValueError):
    """An expression or a time zone croniter or zoneinfo cannot use (the message says why)."""


def check_expression(expression: str) -> str:
    """`expression` with its fields separated by single spaces; CronError when it is not five
    fields croniter reads."""
    fields = expression.split()
    if len(fields) != CRON_FIELDS:
        raise CronError(
            f"must have {CRON_FIELDS} fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}"
        )
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise CronError("is not a valid cron expression")
    next_tick(normalised, "UTC", datetime.now(UTC))  # `0 0 30 2 *` is valid, and never comes
    return normalised


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; CronError when there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"is not a known IANA time zone: {name!r}") from None


def _follows_elapsed_time(expression: str) -> bool:
    """Whether the hour field is `*`: such a schedule fires in a repeated hour again."""
    fields = expression.split()
    return len(fields) >= 2 and fields[1] == "*"


def ticks(expression: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The ticks strictly after `after`, in order, as UTC datetimes."""
    local_zone = zone(tz)
    start = after.astimezone(local_zone)
    elapsed = _follows_elapsed_time(expression)
    try:
        it = croniter(expression, start)
    except (ValueError, KeyError) as exc:
        raise CronError(f"is not a valid cron expression: {exc}") from None
    wall = start.replace(tzinfo=None)
    while True:
        try:
            tick: datetime = it.get_next(datetime)
        except (CroniterError, ValueError, KeyError):
            raise CronError("never matches a date (such as 30 February)") from None
        local = tick.astimezone(local_zone)
        tick_wall = local.replace(tzinfo=None)
        # The clock went back (fall back) to a wall time already passed: a fixed-hour
        # schedule has fired at it already.
        if not elapsed and tick_wall <= wall:
            continue
        wall = max(wall, tick_wall)
        yield tick.astimezone(UTC)


def next_tick(expression: str, tz: str, after: datetime) -> datetime:
    """The first tick strictly after `after` (UTC)."""
    return next(ticks(expression, tz, after))


def _latest_at_or_before(expression: str, tz: str, now: datetime) -> datetime:
    """The latest tick at or before `now` (UTC), found directly (no walk from the past)."""
    local = (now + timedelta(microseconds=1)).astimezone(zone(tz))
    tick: datetime = croniter(expression, local).get_prev(datetime)
    return tick.astimezone(UTC)


@dataclass(frozen=True)
class Due:
    """What to fire now: `tick` (the latest due), how many due ticks before it are `missed`
    (not fired on their own; `missed_at_least`: the count stopped at MAX_COUNTED_MISSED), and
    the `next` tick after it."""

    tick: datetime
    missed: int
    next: datetime
    missed_at_least: bool = False


def due(expression: str, tz: str, next_run_at: datetime, now: datetime) -> Due | None:
    """The tick to fire at `now` for a schedule whose next tick is `next_run_at`, or None when
    that tick has not come yet."""
    if next_run_at > now:
        return None
    latest, missed, capped = next_run_at, 0, False
    for tick in ticks(expression, tz, next_run_at):
        if tick > now:
            break
        if missed >= MAX_COUNTED_MISSED:
            latest, capped = max(latest, _latest_at_or_before(expression, tz, now)), True
            break
        latest, missed = tick, missed + 1
    return Due(
        tick=latest,
        missed=missed,
        next=next_tick(expression, tz, latest),
        missed_at_least=capped,
    )
