"""Template filters for the console's one way to show values (partitions.core.humanize)."""

from __future__ import annotations

from django import template

from partitions.core import humanize, limits

register = template.Library()


@register.filter
def when(dt) -> str:
    """A date-time in the operator's zone, with the zone's name."""
    return humanize.when(dt)


@register.filter
def when_compact(dt) -> str:
    """A date-time for a table column (minutes; the zone is named in the page's zone line)."""
    return humanize.when_compact(dt)


@register.filter
def actor(event) -> str:
    """Who caused an event (JobEvent, ScheduleEvent): the user's name, or the process."""
    return humanize.actor(event.actor, event.actor_user if event.actor_user_id else None)


@register.filter
def changes(data) -> str:
    """Event data in one line (`max parallel 1 → 4 · reason: …`)."""
    return humanize.changes(data)


@register.filter
def number(value) -> str:
    """A number with separators and sensible precision (— for none)."""
    return humanize.DASH if value is None or value == "" else humanize.number(value)


@register.filter
def params(mapping) -> str:
    """Job params as typed on the CLI and the start form: `period=2026-11, fail_rate=0.1`."""
    return ", ".join(f"{k}={v}" for k, v in (mapping or {}).items())


@register.filter
def clip(text, width: str) -> str:
    """`text` on one line in at most the named shown width of partitions.core.limits (`{{ error|clip:"CELL" }}`)."""
    return limits.clip(str(text or ""), limits.SHOWN[width], one_line=True)
