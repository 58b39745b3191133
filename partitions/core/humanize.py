"""Values as an operator reads them: one date-time format in the operator's zone (its name shown), numbers with
separators and sensible precision, stored dicts (summaries, stats, event data) as rows or "max parallel 1 → 4",
actors as the user's name.

The operator's zone is the active one (`timezone.localtime`): settings.TIME_ZONE, or the user's zone when a
middleware activates it; every date on every page goes through `when` or `when_compact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import ngettext

DASH = "\u2014"
ARROW = "\u2192"
#: The one date-time format of the console (Django date-format syntax); T is the zone's name.
WHEN_FORMAT = "Y-m-d H:i:s T"
#: For table columns: minutes, the year only when it is not this year.
COMPACT_FORMAT, COMPACT_OTHER_YEAR = "M j, H:i", "Y M j, H:i"


def when(dt: datetime | None) -> str:
    """`2026-12-02 10:16:49 UTC`: in the operator's zone, with its name."""
    return DASH if dt is None else date_format(timezone.localtime(dt), WHEN_FORMAT)


def when_compact(dt: datetime | None) -> str:
    """`Dec 2, 10:16` (the zone in the column's title or the page's zone line)."""
    if dt is None:
        return DASH
    local = timezone.localtime(dt)
    same_year = local.year == timezone.localtime().year
    return date_format(local, COMPACT_FORMAT if same_year else COMPACT_OTHER_YEAR)


def zone_name() -> str:
    """The operator's zone as the pages name it (`UTC`, `Europe/Paris`)."""
    return str(timezone.get_current_timezone())


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 worker`, `2,000 workers` (`words`: the plural when it is not `word` + "s"), through ngettext."""
    return f"{n:,} {ngettext(word, words or word + 's', n)}"


def number(value: float | int) -> str:
    """`1,234`, `51.8`, `0.0028`: separators, three significant digits below 100, none above."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{round(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    text = f"{value:.3g}"
    return f"{float(text):,}" if "e" not in text else f"{value:.2e}"


#: A long plan is shown as its first and last PREVIEW_EDGE partitions (the admin preview and `jobs start --dry-run`).
PREVIEW_EDGE = 5


def edges(count: int, edge: int = PREVIEW_EDGE) -> list[int | None]:
    """The positions of a long list to show: the first and last `edge`, None where the rest is left out."""
    if count <= 2 * edge + 1:
        return list(range(count))
    return [*range(edge), None, *range(count - edge, count)]


def duration(seconds: float | None) -> str:
    """`2d 3h`, `1h 02m`, `3m 20s`, `12s`."""
    if seconds is None:
        return DASH
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def estimate(e) -> str:
    """An `estimates.Estimate` in words: "about 2m 14s at 1,230 items/s (the pace of the last 3 runs); …"."""
    if not e.runs:
        return "no past runs of this job type yet: no estimated duration"
    text = (f"about {duration(e.seconds)} at {number(e.items_per_second)} items/s (the pace of the last "
            f"{plural(e.runs, 'succeeded run')}), finishing around {when(e.finish)}")
    if e.meets_deadline is None:
        return text
    return text + ("; that meets the deadline" if e.meets_deadline
                   else f"; that misses the deadline by {duration(e.late_seconds)}")


#: Key suffixes that `value` turns into a unit, so the label leaves them out (`avg_ms` → `avg`, `51.8 ms`).
UNIT_SUFFIXES = ("_ms", "_seconds", "_s")


def label(key: str) -> str:
    """`max_parallel` → `max parallel`; `avg_ms` → `avg` (the value carries the unit)."""
    key = str(key)
    for suffix in UNIT_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key.removesuffix(suffix)
            break
    return key.replace("_", " ").strip()


def _as_datetime(text: str) -> datetime | None:
    if len(text) < 16 or text[4:5] != "-" or text[10:11] not in ("T", " "):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if timezone.is_aware(dt) else None


def value(key: str, v) -> str:
    """One stored value in words; `key` gives the unit (`*_ms` in ms, `*_seconds` as a duration)."""
    if v is None or v == "":
        return DASH if v is None else "(empty)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        if key.endswith("_ms"):
            return f"{number(v)} ms"
        if key.endswith(UNIT_SUFFIXES[1:]):
            return duration(v)
        return number(v)
    if isinstance(v, datetime):
        return when(v)
    if isinstance(v, str):
        dt = _as_datetime(v)
        return when(dt) if dt is not None else v
    if isinstance(v, Mapping):
        return " \u00b7 ".join(f"{label(k)} {value(k, x)}" for k, x in v.items()) or DASH
    if isinstance(v, list | tuple):
        return ", ".join(value(key, x) for x in v) or DASH
    return str(v)


def rows(mapping: Mapping | None, *, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """A stored dict (a summary, final stats) as (label, text) rows for a small table, in stored order."""
    if not isinstance(mapping, Mapping):
        return []
    return [(label(k), value(k, v)) for k, v in mapping.items() if k not in skip]


def changes(data: Mapping | None) -> str:
    """Event data in one line: a [before, after] pair as `max parallel 1 → 4` (so is each key that differs
    between a `before` and an `after` dict), anything else as `reason: …`."""
    if not isinstance(data, Mapping):
        return ""
    before, after = data.get("before"), data.get("after")
    if isinstance(before, Mapping) and isinstance(after, Mapping):  # {"before": {…}, "after": {…}}: what changed
        pairs = {k: [before.get(k), after.get(k)] for k in [*before, *(k for k in after if k not in before)]
                 if before.get(k) != after.get(k)}
        rest = {k: v for k, v in data.items() if k not in ("before", "after")}
        return changes({**pairs, **rest}) or "no change"
    parts = []
    for k, v in data.items():
        if isinstance(v, list | tuple) and len(v) == 2 and not isinstance(v[0], list | dict):
            before, after = (value(k, x) if x is not None else "none" for x in v)
            parts.append(f"{label(k)} {before} {ARROW} {after}")
        else:
            parts.append(f"{label(k)}: {value(k, v)}")
    return " \u00b7 ".join(parts)


def actor(label_text: str, user=None) -> str:
    """Who did it: the user's full name (or username) when a user did, else the process that did."""
    if user is not None:
        return user.get_full_name() or user.get_username()
    return label_text.removeprefix("user:") or "the system"
