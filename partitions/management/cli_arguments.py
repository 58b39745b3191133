"""Argument types of `manage.py jobs`: each turns one option's text into a value or one clear argparse error
(durations through `validation.parse_duration`, the one grammar of every surface)."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from partitions.core import validation

#: One --param: (key, value text).
type Pair = tuple[str, str]


def param_pair(value: str) -> Pair:
    """argparse type for --param: `key=value` (a value may contain `=`; it stays text: the Params form parses
    it), so `--param period 2026-11` is refused at `period` rather than as a stray argument."""
    key, sep, text = value.partition("=")
    if not sep and value.isidentifier():
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}: write {value}=VALUE as one argument")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}")
    return key, text


def parse_params(pairs: list[Pair]) -> dict[str, str]:
    """--param pairs into a dict; a key given twice is refused rather than silently taking the last value."""
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise CommandError(f"--param {key} given twice ({params[key]!r} and {value!r}): give it once")
        params[key] = value
    return params


DEADLINE_HELP = ("a date-time (ISO 8601; without an offset it is read in TIME_ZONE) or a time from now: "
                 "+30m, +2h, +1d")


def parse_deadline(value: str, *, option: str = "--deadline") -> datetime:
    """A deadline typed on the command line: `+30m` / `+2h` / `+1d` from now (`validation.relative_deadline`,
    as the admin's deadline inputs) or an ISO 8601 date-time, naive ones in the current zone; CommandError
    otherwise. The service checks its range."""
    if (when := validation.relative_deadline(value)) is not None:
        return when
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:  # well formed but not a real date-time, e.g. month 13
        parsed = None
    if parsed is None:
        raise CommandError(f"{option} is not an ISO 8601 date-time or a time from now such as +30m: {value!r}")
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def list_limit(value: str) -> int:
    """argparse type for --limit: ASCII digits from 1 to LIST_LIMIT_MAX."""
    number = validation.parse_id(value)
    if number is None or not 1 <= number <= validation.LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {validation.LIST_LIMIT_MAX:,}, "
                                         f"got {value!r}")
    return number


def job_id_arg(value: str) -> int:
    """argparse type for a job id: ASCII digits that fit a bigint."""
    number = validation.parse_id(value)
    if number is None:
        raise argparse.ArgumentTypeError(f"not a job id: {value!r}")
    return number


def whole_number(value: str) -> int:
    """argparse type for --max-parallel/--priority: a signed whole number (the service checks the range)."""
    text = value.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}")
    if len(digits) > validation.ID_MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{value!r} is too large: at most {validation.ID_MAX_DIGITS} digits")
    return int(text)


def rate_arg(value: str) -> float | None:
    """argparse type for --rate: items per second, or `none` for no limit (the service checks the range)."""
    if value.strip().lower() in {"none", "off", "0"}:
        return None
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate in items per second (or none): {value!r}") from None
    if rate != rate or rate in {float("inf"), float("-inf")}:
        raise argparse.ArgumentTypeError(f"not a finite rate: {value!r}")
    return rate


#: The longest --older-than: far past any history, well inside timedelta's range.
AGE_MAX = timedelta(days=100_000)


def age_arg(value: str) -> timedelta:
    """argparse type for --older-than: a whole number of days, hours or minutes (`30d`, `12h`, `90m`;
    `validation.parse_duration`'s grammar)."""
    age = validation.duration(value)
    if age is None or age > AGE_MAX:
        raise argparse.ArgumentTypeError(f"expected an age such as 30d, 12h or 90m, got {value!r}")
    return age
