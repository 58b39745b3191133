"""Argument types of `manage.py jobs`: each turns one option's text into a value or one clear argparse error
(durations through `validation.parse_duration`, the one grammar of every surface)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from django.core.management.base import CommandError

from partitions import validation


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`key=value` pairs into a dict (values stay strings: the Params form parses them); a key given twice is
    refused rather than silently taking the last value."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param expects key=value, got {pair!r}")
        if key in params:
            raise CommandError(f"--param {key} given twice ({params[key]!r} and {value!r}): give it once")
        params[key] = value
    return params


def list_limit(value: str) -> int:
    """argparse type for --limit: ASCII digits from 1 to LIST_LIMIT_MAX."""
    number = validation.parse_id(value)
    if number is None or not 1 <= number <= validation.LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {validation.LIST_LIMIT_MAX:,}")
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
    if not (digits.isascii() and digits.isdigit()) or len(digits) > validation.ID_MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}")
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
