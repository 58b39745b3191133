"""When a schedule fires: cron expressions, every N minutes/hours/days, monthly; relative deadlines ("+90m").

Pure functions, no database: `cadence_errors` says what is wrong with a cadence (the model, the admin form and
the CLI all call it), `next_fire` computes the first fire strictly after a moment. Fires are computed in the
schedule's time zone (a cron "0 2 * * *" in Europe/Madrid is 02:00 Madrid time, summer and winter; a wall
time that does not exist on a DST night becomes the next one that does), and every moment is stored in UTC.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

CRON, MINUTES, HOURS, DAYS, MONTHLY = "cron", "minutes", "hours", "days", "monthly"
KINDS = (CRON, MINUTES, HOURS, DAYS, MONTHLY)
#: The largest N of "every N <unit>" (a year or so in each unit).
EVERY_MAX = {MINUTES: 525_600, HOURS: 8_760, DAYS: 366, MONTHLY: 12}
#: Relative deadlines: at least a minute after the fire, at most a year.
DEADLINE_OFFSET_MIN, DEADLINE_OFFSET_MAX = timedelta(minutes=1), timedelta(days=366)
OFFSET_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


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


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone `name`, or None when there is no such zone."""
    try:
        return ZoneInfo(name) if name and "\x00" not in name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def cadence_errors(cadence: Cadence) -> dict[str, list[str]]:
    """What is wrong with a cadence, per field ({} when it is fine)."""
    errors: dict[str, list[str]] = {}
    if cadence.kind not in KINDS:
        errors["kind"] = [f"Choose one of {', '.join(KINDS)}."]
    elif cadence.kind == CRON:
        if not cadence.cron.strip() or len(cadence.cron) > 100 or not croniter.is_valid(cadence.cron.strip()):
            errors["cron"] = [f"Enter a valid five-field cron expression such as \"0 2 * * *\" "
                              f"(got {cadence.cron!r})."]
    else:
        top = EVERY_MAX[cadence.kind]
        if not (isinstance(cadence.every, int) and not isinstance(cadence.every, bool) and 1 <= cadence.every <= top):
            errors["every"] = [f"Enter a whole number from 1 to {top:,}."]
    if zone(cadence.tz) is None:
        errors["tz"] = [f"Unknown time zone {cadence.tz!r}: use an IANA name such as Europe/Madrid or UTC."]
    return errors


def next_fire(cadence: Cadence, after: datetime) -> datetime:
    """The first fire strictly after `after` (aware), in UTC."""
    tz = zone(cadence.tz) or UTC
    if cadence.kind == CRON:
        return croniter(cadence.cron.strip(), after.astimezone(tz)).get_next(datetime).astimezone(UTC)
    anchor = (cadence.anchor or after).astimezone(tz)
    if anchor > after:
        return anchor.astimezone(UTC)
    if cadence.kind in (MINUTES, HOURS):  # absolute durations: DST does not stretch "every 5 minutes"
        step = timedelta(**{cadence.kind: cadence.every})
        steps = (after - anchor) // step + 1
        return (anchor + steps * step).astimezone(UTC)
    if cadence.kind == DAYS:  # the anchor's wall-clock time, every N local days
        local = after.astimezone(tz)
        days = (local.date() - anchor.date()).days // cadence.every * cadence.every
        while True:
            candidate = _wall(anchor, tz, anchor.date() + timedelta(days=days))
            if candidate > after:
                return candidate.astimezone(UTC)
            days += cadence.every
    # MONTHLY: the anchor's day of month (or the month's last day) at its wall-clock time, every N months.
    local = after.astimezone(tz)
    months = ((local.year - anchor.year) * 12 + local.month - anchor.month) // cadence.every * cadence.every
    while True:
        year, month = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
        day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
        candidate = _wall(anchor, tz, anchor.date().replace(year=year, month=month + 1, day=day))
        if candidate > after:
            return candidate.astimezone(UTC)
        months += cadence.every


def _wall(anchor: datetime, tz: ZoneInfo, day) -> datetime:
    """`anchor`'s local time of day on `day`, normalised through UTC (a DST gap moves it forward)."""
    naive = datetime.combine(day, anchor.timetz().replace(tzinfo=None))
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def fires_between(cadence: Cadence, start: datetime, end: datetime, *, limit: int = 10_000) -> int:
    """How many fires fall in (start, end] (at most `limit`): the missed fires after an outage."""
    count, moment = 0, start
    while count < limit:
        moment = next_fire(cadence, moment)
        if moment > end:
            break
        count += 1
    return count


def parse_offset(text: str) -> timedelta | None:
    """A relative deadline such as "+90m", "+2h", "+1d" (the plus is optional), or None when malformed or
    outside DEADLINE_OFFSET_MIN..MAX."""
    match = re.fullmatch(r"\+?\s*([0-9]{1,6})\s*(m|min|h|d)", (text or "").strip().lower())
    if not match:
        return None
    offset = timedelta(**{OFFSET_UNITS[match[2][0]]: int(match[1])})
    return offset if DEADLINE_OFFSET_MIN <= offset <= DEADLINE_OFFSET_MAX else None


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
