"""When a schedule fires: cron expressions, every N minutes/hours/days, monthly; relative deadlines ("+90m").

Pure functions, no database: `cadence_errors` says what is wrong with a cadence (the model, the admin form and
the CLI all call it), `next_fire` computes the first fire strictly after a moment. Fires are computed in the
schedule's time zone (a cron "0 2 * * *" in Europe/Madrid is 02:00 Madrid time, summer and winter), and every
moment is stored in UTC.

Daylight saving time, one rule for cron, daily and monthly cadences (wall-clock cadences): a wall time that
occurs twice (the autumn night's repeated hour) fires once, at its first occurrence; a wall time that does not
exist (the spring night's skipped hour) fires once, at the first valid instant after it (the gap's end, 03:00
in Madrid). Every N minutes or hours counts elapsed time, so DST neither stretches nor repeats it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from partitions.core import validation
from partitions.core.limits import ECHO, clip

CRON, MINUTES, HOURS, DAYS, MONTHLY = "cron", "minutes", "hours", "days", "monthly"
KINDS = (CRON, MINUTES, HOURS, DAYS, MONTHLY)
#: The largest N of "every N <unit>" (a year or so in each unit).
EVERY_MAX = {MINUTES: 525_600, HOURS: 8_760, DAYS: 366, MONTHLY: 12}
#: Relative deadlines: at least a minute after the fire, at most a year.
DEADLINE_OFFSET_MIN, DEADLINE_OFFSET_MAX = timedelta(minutes=1), timedelta(days=366)
#: A cron expression that does not fire within this many years never fires (`0 0 31 2 *`): refused.
CRON_HORIZON_YEARS = 5
CRON_MAX_LENGTH = 100


@dataclass(frozen=True)
class Cadence:
    """How often a schedule fires. `anchor` is the first fire of an interval or monthly schedule (its phase:
    "every 6 hours from 00:30", "monthly on the 1st at 07:00"); cron needs none."""

    kind: str
    cron: str = ""
    every: int = 1
    tz: str = "UTC"
    anchor: datetime | None = None

    def describe(self) -> str:
        if self.kind == CRON:
            return f"cron {self.cron} ({self.tz})"
        unit = {MINUTES: "minute", HOURS: "hour", DAYS: "day", MONTHLY: "month"}[self.kind]
        every = f"every {unit}" if self.every == 1 else f"every {self.every} {unit}s"
        return f"{every} ({self.tz})"


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a five-field cron expression that fires within CRON_HORIZON_YEARS, or None."""
    fields = expression.split() if isinstance(expression, str) else []
    refused = f"Enter a valid five-field cron expression such as \"0 2 * * *\" (got {clip(str(expression), ECHO)!r})."
    if len(str(expression)) > CRON_MAX_LENGTH or len(fields) != 5 or "\x00" in expression:
        return refused
    try:
        if not croniter.is_valid(" ".join(fields)):
            return refused
        croniter(" ".join(fields), datetime.now(UTC), max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
    except Exception:  # croniter's own errors (CroniterBadDateError, …), and whatever else it raises on odd input
        return f"The cron expression {' '.join(fields)!r} never fires (no fire within {CRON_HORIZON_YEARS} years)."
    return None


def cadence_errors(cadence: Cadence) -> dict[str, list[str]]:
    """What is wrong with a cadence, per field ({} when it is fine)."""
    errors: dict[str, list[str]] = {}
    if cadence.kind not in KINDS:
        errors["kind"] = [f"Choose one of {', '.join(KINDS)}."]
    elif cadence.kind == CRON:
        if problem := cron_error(cadence.cron):
            errors["cron"] = [problem]
    else:
        top = EVERY_MAX[cadence.kind]
        if not (isinstance(cadence.every, int) and not isinstance(cadence.every, bool) and 1 <= cadence.every <= top):
            errors["every"] = [f"Enter a whole number from 1 to {top:,}."]
    if problem := validation.time_zone_error(cadence.tz):
        errors["tz"] = [problem]
    return errors


def local_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of the naive wall time `wall` in `tz`, by the DST rule: the first of a repeated wall
    time, and the gap's end for one that does not exist."""
    wall = wall.replace(tzinfo=None)
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall:
        later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        return min(earlier, later)
    # In a gap: fold=1 reads it with the offset after the change (an instant before the gap), fold=0 with the
    # one before it (after the gap). The gap's end is the first instant that has the later offset.
    low, high = wall.replace(tzinfo=tz, fold=1).astimezone(UTC), earlier
    after_offset = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def fires_after(cadence: Cadence, after: datetime) -> Iterator[datetime]:
    """The fires strictly after `after` (aware), in order, in UTC."""
    tz = validation.time_zone(cadence.tz) or ZoneInfo("UTC")
    if cadence.kind == CRON:
        yield from _distinct_after(after, (local_instant(w, tz) for w in _cron_walls(cadence.cron, after, tz)))
        return
    anchor = (cadence.anchor or after).astimezone(tz)
    if cadence.kind in (MINUTES, HOURS):  # elapsed time: DST does not stretch "every 5 minutes"
        step = timedelta(**{cadence.kind: cadence.every})
        steps = 0 if anchor > after else (after - anchor) // step + 1
        while True:
            yield (anchor + steps * step).astimezone(UTC)
            steps += 1
    yield from _distinct_after(after, (local_instant(datetime.combine(day, anchor.time()), tz)
                                       for day in _days(cadence, anchor, after.astimezone(tz).date())))


def next_fire(cadence: Cadence, after: datetime) -> datetime:
    """The first fire strictly after `after` (aware), in UTC."""
    return next(fires_after(cadence, after))


def _cron_walls(expression: str, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    # Wall times, naive, from an hour before `after`'s wall time: in a repeated hour the wall clock goes back.
    start = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=1)
    walls = croniter(" ".join(expression.split()), start, max_years_between_matches=CRON_HORIZON_YEARS)
    while True:
        yield walls.get_next(datetime)


def _days(cadence: Cadence, anchor: datetime, around: date) -> Iterator[date]:
    """The local days a daily or monthly cadence fires on, from the period that holds `around` (or the anchor's)."""
    if cadence.kind == DAYS:
        days = max(0, (around - anchor.date()).days // cadence.every * cadence.every - cadence.every)
        while True:
            yield anchor.date() + timedelta(days=days)
            days += cadence.every
    months = max(0, ((around.year - anchor.year) * 12 + around.month - anchor.month)
                 // cadence.every * cadence.every - cadence.every)
    while True:  # the anchor's day of month, or the month's last day
        year, month = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
        yield date(year, month + 1, min(anchor.day, calendar.monthrange(year, month + 1)[1]))
        months += cadence.every


def _distinct_after(after: datetime, fires: Iterator[datetime]) -> Iterator[datetime]:
    """`fires` (non-decreasing) past `after`, each instant once (wall times in a DST gap share the gap's end)."""
    last = after
    for fire in fires:
        if fire > last:
            yield fire
            last = fire


def fires_between(cadence: Cadence, start: datetime, end: datetime, *, limit: int = 10_000) -> int:
    """How many fires fall in (start, end] (at most `limit`): the missed fires after an outage."""
    count = 0
    for moment in fires_after(cadence, start):
        if moment > end or count >= limit:
            break
        count += 1
    return count


def parse_offset(text: str) -> timedelta | None:
    """A relative deadline such as "+90m", "+2h", "+1d" (the plus is optional; `validation.duration`'s
    grammar), or None when malformed or outside DEADLINE_OFFSET_MIN..MAX."""
    offset = validation.duration(text)
    return offset if offset is not None and DEADLINE_OFFSET_MIN <= offset <= DEADLINE_OFFSET_MAX else None


def format_offset(offset: timedelta | None) -> str:
    """"+90m", "+2h", "+1d" (the largest unit that divides the offset), or "" for none."""
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"+{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"+{minutes // 60}h"
    return f"+{minutes}m"
