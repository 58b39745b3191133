"""Deadline-at-risk alerts: one `deadline_at_risk` event per episode, one `deadline_recovered` when it ends.

The projection (`partitions.reads.projection`, read through `jobs_stats`, the figures every surface shows) is looked
at on each `tick`, and each look is one reading:

- `late`: the projected finish is past the deadline, or nothing moves (a health hold, no free worker): the
  rate the projection uses is zero;
- `clear`: on time with a margin, the projected finish at least max(5% of the time left, 30 s) before the
  deadline (the hysteresis band, so a job hovering at its deadline does not flap);
- `band`: on time inside that margin; `neutral`: paused by an operator (a choice, not a risk: it starts no
  episode and ends none, and interrupts the grace);
- `unknown`: no verdict yet (the rate is being measured after a change): the look is ignored.

A job enters an episode when it reads `late` continuously for `PARTITIONS_DEADLINE_GRACE_SECONDS` (60; 0 turns
the alerts off), and leaves it when it reads `clear` continuously for as long; each crossing writes one event
(the relay turns it into notifications). A job that ends ends its episode without a recovery alert. The state
of the watch lives in the job's stats under `WATCH_KEY`, written with the event under the job's row lock, so
ticks on several hosts alert once; it belongs to one attempt of the job (a retry starts afresh).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils.dateparse import parse_datetime

from partitions import conf
from partitions.core.events import EventType
from partitions.core.states import JOB_DEADLINE_WATCHED
from partitions.engine import claiming
from partitions.engine.lifecycle import SYSTEM, event
from partitions.models import Job
from partitions.reads.projection import PAUSED, Projection
from partitions.reads.statistics import JobStats, jobs_stats
from partitions.wording import presenters

#: The key of job.stats that holds the watch (not shown on the job page, dropped by finalize).
WATCH_KEY = "deadline_watch"
#: The hysteresis: a recovery needs the projected finish this share of the time left before the deadline…
RECOVERY_SHARE = 0.05
#: … and at least this many seconds before it.
RECOVERY_MIN_SECONDS = 30.0
AT_RISK, RECOVERED = EventType.DEADLINE_AT_RISK, EventType.DEADLINE_RECOVERED


class Reading(enum.StrEnum):
    LATE = "late"
    CLEAR = "clear"
    BAND = "band"
    NEUTRAL = "neutral"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Watch:
    """Where a job stands: inside an episode (`at_risk`, alerted), and since when the reading that would
    cross over (late outside an episode, clear inside one) has been seen without a break."""

    attempt: int = 0
    at_risk: bool = False
    since: datetime | None = None


def reading(p: Projection, deadline: datetime, now: datetime) -> Reading:
    """What one look at the projection says about the deadline (see the module docstring)."""
    if p.limited_by == PAUSED:
        return Reading.NEUTRAL
    if p.meets_deadline:
        margin = max(RECOVERY_SHARE * (deadline - now).total_seconds(), RECOVERY_MIN_SECONDS)
        clear = p.projected_finish is not None and p.projected_finish <= deadline - timedelta(seconds=margin)
        return Reading.CLEAR if clear else Reading.BAND
    if p.meets_deadline is False or p.effective_rate == 0:
        return Reading.LATE
    return Reading.UNKNOWN


def step(watch: Watch, seen: Reading, now: datetime, grace_seconds: float) -> tuple[Watch, str | None]:
    """The watch after one reading, and the alert it makes (AT_RISK, RECOVERED or None): pure, so the episode
    rules are tested with any clock."""
    if seen == Reading.UNKNOWN:
        return watch, None
    crossing = Reading.CLEAR if watch.at_risk else Reading.LATE
    if seen != crossing:
        return Watch(watch.attempt, watch.at_risk), None
    since = watch.since or now
    if (now - since).total_seconds() < grace_seconds:
        return Watch(watch.attempt, watch.at_risk, since), None
    return Watch(watch.attempt, not watch.at_risk), RECOVERED if watch.at_risk else AT_RISK


def watch_of(stats: dict, attempt: int) -> Watch:
    """The watch kept in job.stats for this attempt (a fresh one for another attempt, or none kept)."""
    kept = stats.get(WATCH_KEY) if isinstance(stats, dict) else None
    if not isinstance(kept, dict) or kept.get("attempt") != attempt:
        return Watch(attempt)
    since = parse_datetime(kept["since"]) if isinstance(kept.get("since"), str) else None
    return Watch(attempt, bool(kept.get("at_risk")), since)


def _stored(watch: Watch) -> dict:
    return {**asdict(watch), "since": watch.since.isoformat() if watch.since else None}


def alert_data(stats: JobStats, since: datetime | None) -> dict:
    """What an alert carries: the projected finish, what limits the job, the advice and the throttle, as figures
    and in the job page's own words (`presenters.job_words`: projection, limit, advice, throttle)."""
    figures = stats.figures()
    finish = figures["eta"]
    return {
        "deadline": stats.job.deadline.isoformat(), "projected_finish": finish.isoformat() if finish else None,
        "items_remaining": stats.remaining_items, "seen_since": since.isoformat() if since else None,
        **{name: figures[name] for name in ("items_per_second", "limited_by", "held", "workers_needed",
                                            "rate_needed", "per_worker_rate", "fleet_workers")},
        **presenters.job_words(stats),
    }


def _apply(stats: JobStats, seen: Reading, grace: float) -> str | None:
    """One reading of one job, under its row lock (the watch read again: another host's tick may have moved
    it): the watch moves, and an alert is written with it."""
    with transaction.atomic():
        job = claiming.job_locked(stats.job.pk, no_key=True)
        if job is None or job.status not in JOB_DEADLINE_WATCHED or job.deadline != stats.job.deadline:
            return None  # it ended, or its deadline changed, since the projection was read
        before = watch_of(job.stats, len(stats.attempts))
        after, alert = step(before, seen, stats.now, grace)
        if alert is not None:
            event(job.pk, alert, SYSTEM, alert_data(stats, before.since))
        if after != before:
            Job.objects.filter(pk=job.pk).update(stats={**(job.stats or {}), WATCH_KEY: _stored(after)})
    return alert


def deadline_alerts_check() -> dict[str, int]:
    """Look at every watched job with a deadline once; the alerts written, by kind."""
    counts = {AT_RISK.value: 0, RECOVERED.value: 0}
    grace = conf.get("DEADLINE_GRACE_SECONDS")
    if grace is None:
        return counts
    jobs = list(Job.objects.filter(status__in=sorted(JOB_DEADLINE_WATCHED), deadline__isnull=False))
    for stats in jobs_stats(jobs).values():
        seen = reading(stats.projection, stats.job.deadline, stats.now)
        before = watch_of(stats.job.stats, len(stats.attempts))
        if step(before, seen, stats.now, grace)[0] == before:
            continue  # nothing moves (the common case): no lock, no write
        if (alert := _apply(stats, seen, grace)) is not None:
            counts[alert] += 1
    return counts
