"""A planned job's duration and deadline check, from its type's past runs (the start preview, `jobs start
--dry-run`).

Before a job exists there is nothing to sample, so the pace is its type's last succeeded runs: each run's
average rate as its own page showed it (`projection`, over its work time), weighted by the items each handled,
then bounded by the rate limit the new run would have. The duration is the planned items at that pace; it
says nothing of max parallel or the fleet, which past runs may not have shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from partitions.core.states import JobStatus
from partitions.models import Job
from partitions.reads.statistics import jobs_stats

#: Succeeded runs of the type read for its pace, newest first.
PAST_RUNS = 5


@dataclass(frozen=True)
class Estimate:
    """`runs`: the past runs the pace comes from (0: no past runs, and no figures)."""

    runs: int
    items_per_second: float | None = None
    seconds: float | None = None
    finish: datetime | None = None
    #: With a deadline: whether `finish` is at or before it, and by how much it is late (0 when on time).
    meets_deadline: bool | None = None
    late_seconds: float | None = None


def past_pace(type_name: str) -> tuple[int, float | None]:
    """(runs, items/s) of the type's last PAST_RUNS succeeded runs that handled items."""
    jobs = list(Job.objects.filter(type_name=type_name, status=JobStatus.SUCCEEDED).order_by("-finished_at", "-id")
                [:PAST_RUNS])
    handled = seconds = 0.0
    runs = 0
    for stats in jobs_stats(jobs).values():
        rate = stats.projection.items_per_second
        if stats.handled and rate:
            handled, seconds, runs = handled + stats.handled, seconds + stats.handled / rate, runs + 1
    return runs, (handled / seconds if seconds else None)


def plan_estimate(type_name: str, items: int, *, rate_limit: float | None = None,
                  deadline: datetime | None = None, now: datetime | None = None) -> Estimate:
    """How long `items` would take at the type's past pace (bounded by `rate_limit`), and the deadline check."""
    runs, pace = past_pace(type_name)
    if pace is None:
        return Estimate(runs=0)
    rate = min(pace, rate_limit) if rate_limit else pace
    seconds = items / rate
    finish = (now or timezone.now()) + timedelta(seconds=seconds)
    if deadline is None:
        return Estimate(runs=runs, items_per_second=rate, seconds=seconds, finish=finish)
    late = (finish - deadline).total_seconds()
    return Estimate(runs=runs, items_per_second=rate, seconds=seconds, finish=finish, meets_deadline=late <= 0,
                    late_seconds=max(0.0, late))
