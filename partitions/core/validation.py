"""Bounds on every input that reaches the database: run options, ids, free texts, param values, durations,
time zones and start times.

The admin forms, the CLI and the services share these checks; the services are the last line, so a
caller that skips the forms still gets `InvalidParams` (one line per field), never a `DataError` from
PostgreSQL or an `OverflowError` from psycopg. There is one grammar for durations (`parse_duration`: every
`--every`, `--deadline +90m`, `--older-than`, the admin's deadline field) and one list of time zones
(`time_zone`), so no surface is looser than another.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from partitions.core.exceptions import RUN_OPTIONS, InvalidParams
from partitions.core.limits import ECHO, clip

#: Partitions in flight for one job at most (0 = no cap); far above any fleet, far below the column's range.
MAX_PARALLEL_LIMIT = 100_000
#: Job.priority is a smallint.
PRIORITY_MIN, PRIORITY_MAX = -32_768, 32_767
#: Job.dedupe_key is a varchar(200).
DEDUPE_KEY_MAX_LENGTH = 200
#: Operator reasons (cancel …) are stored in events and shown on the job page.
REASON_MAX_LENGTH = 1_000
#: How far ahead a deadline may lie.
DEADLINE_HORIZON = timedelta(days=3653)  # ten years
#: Ids in URLs and query strings: ASCII digits that fit a bigint.
ID_MAX_DIGITS = 18
#: Rows a listing (CLI --limit) returns at most.
LIST_LIMIT_MAX = 10_000
#: Integers stored in JSON params or passed to SQL must fit a bigint.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
#: Date-times every layer can hold: PostgreSQL, psycopg, Python (years 1..9999 in UTC), with room for offsets.
DATETIME_MIN = datetime(1, 1, 2, tzinfo=UTC)
DATETIME_MAX = datetime(9999, 12, 30, tzinfo=UTC)

#: A rate limit in items/s: at least one item an hour, at most far beyond any fleet.
RATE_LIMIT_MIN, RATE_LIMIT_MAX = 1 / 3600, 1_000_000.0
#: The longest pause after each batch (a running partition sleeps it with its lease held).
PAUSE_MS_MAX = 60_000


#: Durations, on every surface: a whole number of minutes, hours or days, ASCII, no spaces (`90m`, `+2h`, `1d`).
DURATION_PATTERN = re.compile(r"\+?([0-9]{1,6})([mhd])")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
#: JobSchedule.timezone is a varchar(64).
TIME_ZONE_MAX_LENGTH = 64
#: How far from now a schedule's first fire may lie, either way.
START_HORIZON = timedelta(days=3653)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: An argument left out: "leave this setting as it is" (or, when starting a job, "the job type's default"),
#: where None means something (no rate limit, no deadline).
UNSET: Any = _Unset()


def parse_id(value: Any) -> int | None:
    """A non-negative id from a URL or query string: ASCII digits that fit a bigint, else None."""
    text = str(value if value is not None else "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > ID_MAX_DIGITS:
        return None
    return int(text)


def utc_datetime(value: datetime) -> datetime | None:
    """`value` in UTC when every layer can store it (aware; naive is taken in the current time zone), else None."""
    try:
        aware = timezone.make_aware(value) if timezone.is_naive(value) else value
        in_utc = aware.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return in_utc if DATETIME_MIN <= in_utc <= DATETIME_MAX else None


def parse_duration(text: Any) -> tuple[int, str] | None:
    """`90m`, `+2h`, `1d` as (N, unit letter); None for anything else (spaces, other units, other digits)."""
    match = DURATION_PATTERN.fullmatch(text) if isinstance(text, str) else None
    return (int(match[1]), match[2]) if match else None


def duration(text: Any) -> timedelta | None:
    """`parse_duration` as a timedelta, or None."""
    parsed = parse_duration(text)
    return None if parsed is None else timedelta(**{DURATION_UNITS[parsed[1]]: parsed[0]})


def relative_deadline(text: Any, *, now: datetime | None = None) -> datetime | None:
    """`+30m`, `+2h`, `+1d` from now (the plus required: a bare `30m` is no date), or None for anything else:
    how every deadline input (admin forms, CLI) reads a relative deadline."""
    if not isinstance(text, str) or not text.strip().startswith("+"):
        return None
    delta = duration(text.strip())
    return None if delta is None else (now or timezone.now()) + delta


@functools.cache
def _time_zone_names() -> frozenset[str]:
    # The IANA names the tzdata package ships, less the machine-dependent alias of the local zone.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def time_zone(name: Any) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone `name` (exactly as listed: `Europe/Madrid`, `UTC`), or None for anything else: a
    directory (`Europe`), a path, a `posix/` or `right/` variant, a name longer than the column."""
    if not isinstance(name, str) or len(name) > TIME_ZONE_MAX_LENGTH or name not in _time_zone_names():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def time_zone_error(name: Any) -> str | None:
    """Why `name` is not a time zone every layer accepts, or None."""
    if time_zone(name) is not None:
        return None
    return f"Unknown time zone {clip(str(name), ECHO)!r}: use an IANA name such as Europe/Madrid or UTC."


def start_time(value: Any, *, now: datetime) -> datetime | None:
    """A schedule's first fire in UTC when it is storable and within START_HORIZON of `now`, else None."""
    in_utc = utc_datetime(value) if isinstance(value, datetime) else None
    if in_utc is None or abs(in_utc - now) > START_HORIZON:
        return None
    return in_utc


def deadline_error(deadline: datetime, *, now: datetime | None = None, allow_past: bool = False) -> str | None:
    """Why `deadline` (already in UTC) is refused, or None."""
    now = now or timezone.now()
    if not allow_past and deadline <= now:
        return "Enter a deadline in the future."
    if deadline > now + DEADLINE_HORIZON:
        return f"Enter a deadline within {DEADLINE_HORIZON.days} days."
    return None


@dataclass(frozen=True)
class RunOptions:
    """The checked options of one run, ready to store."""

    max_parallel: int = 0
    priority: int = 0
    deadline: datetime | None = None
    dedupe_key: str | None = None
    rate_limit: float | None = None
    pause_ms: int = 0


def throttle_errors(rate_limit: Any, pause_ms: Any) -> dict[str, list[str]]:
    """What is wrong with a rate limit (items/s, None = none) and a pause (ms), per field."""
    errors: dict[str, list[str]] = {}
    if rate_limit is not None and not (
            isinstance(rate_limit, int | float) and not isinstance(rate_limit, bool)
            and RATE_LIMIT_MIN <= rate_limit <= RATE_LIMIT_MAX):
        errors["rate_limit"] = [f"Enter items per second from {RATE_LIMIT_MIN:.6f} to {RATE_LIMIT_MAX:,.0f} "
                                "(empty = no limit)."]
    if not _int_within(pause_ms, 0, PAUSE_MS_MAX):
        errors["pause_ms"] = [f"Enter milliseconds from 0 to {PAUSE_MS_MAX:,}."]
    return errors


def run_options(*, max_parallel: Any = 0, priority: Any = 0, deadline: datetime | None = None,
                dedupe_key: str | None = None, allow_past_deadline: bool = False,
                rate_limit: Any = None, pause_ms: Any = 0) -> RunOptions:
    """Check a run's options against their columns and sane ranges; raise InvalidParams naming each bad one."""
    errors: dict[str, list[str]] = throttle_errors(rate_limit, pause_ms)
    if not _int_within(max_parallel, 0, MAX_PARALLEL_LIMIT):
        errors["max_parallel"] = [f"Enter a whole number from 0 to {MAX_PARALLEL_LIMIT:,} (0 = no cap)."]
    if not _int_within(priority, PRIORITY_MIN, PRIORITY_MAX):
        errors["priority"] = [f"Enter a whole number from {PRIORITY_MIN:,} to {PRIORITY_MAX:,}."]
    stored_deadline = None
    if deadline is not None:
        stored_deadline = utc_datetime(deadline) if isinstance(deadline, datetime) else None
        problem = "Enter a valid date-time." if stored_deadline is None else deadline_error(
            stored_deadline, allow_past=allow_past_deadline)
        if problem:
            errors["deadline"] = [problem]
    key = (dedupe_key or "").strip() or None
    if key is not None and (len(key) > DEDUPE_KEY_MAX_LENGTH or "\x00" in key):
        errors["dedupe_key"] = [f"Use at most {DEDUPE_KEY_MAX_LENGTH} characters (no NUL)."]
    if errors:
        raise InvalidParams(RUN_OPTIONS, errors)
    return RunOptions(max_parallel=max_parallel, priority=priority, deadline=stored_deadline, dedupe_key=key,
                      rate_limit=None if rate_limit is None else float(rate_limit), pause_ms=pause_ms)


def reason_text(reason: str | None) -> str:
    """An operator's free-text reason, stripped; InvalidParams when it is too long to store and show."""
    text = (reason or "").replace("\x00", "").strip()
    if len(text) > REASON_MAX_LENGTH:
        raise InvalidParams(RUN_OPTIONS, {"reason": [f"Use at most {REASON_MAX_LENGTH:,} characters."]})
    return text


def unstorable_values(value: Any, path: str = "") -> list[str]:
    """Where a cleaned params value cannot be stored in JSONB or passed to SQL (huge ints, NUL, odd dates)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [] if BIGINT_MIN <= value <= BIGINT_MAX else [f"{path or 'value'}: the number is too large."]
    if isinstance(value, float):
        return [] if value == value and abs(value) != float("inf") else [f"{path or 'value'}: enter a finite number."]
    if isinstance(value, str):
        return [f"{path or 'value'}: NUL characters are not allowed."] if "\x00" in value else []
    if isinstance(value, datetime):
        return [] if utc_datetime(value) is not None else [f"{path or 'value'}: the date-time is out of range."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in unstorable_values(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list | tuple | set | frozenset):
        return [p for i, v in enumerate(value) for p in unstorable_values(v, f"{path}[{i}]")]
    return []


def _int_within(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
