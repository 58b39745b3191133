"""The projection's figures in words, one wording for every surface that states them: the job page and list
and the deadline alerts (`partitions.deadline_alerts`), so a notification says what the page says."""

from __future__ import annotations

from datetime import datetime

from partitions import humanize, projection
from partitions.humanize import duration as fmt_duration
from partitions.humanize import plural
from partitions.states import JobStatus
from partitions.statistics import JobStats


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return humanize.DASH
    return f"{rate:,.0f} items/s" if rate >= 100 else f"{rate:.1f} items/s"


def fmt_dt(dt: datetime | None) -> str:
    return humanize.when(dt)


def limit_text(stats: JobStats) -> str:
    """What limits the job, in words ("" when nothing does)."""
    p, job = stats.projection, stats.job
    detail = {projection.RATE_LIMIT: f" of {fmt_rate(job.rate_limit)}",
              projection.MAX_PARALLEL: f" ({job.max_parallel})",
              projection.WORKERS: f": the fleet has {plural(p.fleet_workers or 0, 'worker')}"}
    if p.limited_by == projection.HEALTH:
        return f"held: {p.held}"
    return "" if p.limited_by is None else projection.LIMIT_WORDS[p.limited_by] + detail.get(p.limited_by, "")


def _ended_verdict(stats: JobStats) -> str:
    p, job = stats.projection, stats.job
    if job.status == JobStatus.SUCCEEDED:
        return "met" if p.meets_deadline else f"missed by {fmt_duration(p.late_seconds)}"
    return f"not met: {job.status} at {stats.progress.percent:.1f}%"


def projection_text(stats: JobStats) -> str:
    """The deadline verdict (projected finish vs the deadline, or how a finished job ended) and what limits the
    job; "" without a deadline and without a limit."""
    p, job = stats.projection, stats.job
    limit = limit_text(stats)
    if job.deadline is None:
        return "" if job.is_terminal else limit
    deadline = fmt_dt(job.deadline)
    if job.is_terminal:
        return f"deadline {deadline}: {_ended_verdict(stats)}"
    left = stats.deadline_seconds_left
    if p.projected_finish is None:
        if left is not None and left <= 0:
            text = f"deadline {deadline} has passed: late"
        elif job.status != JobStatus.RUNNING:
            text = f"deadline {deadline} (in {fmt_duration(left)}); no projection while {job.status}"
        elif p.held is not None:
            text = f"deadline {deadline} (in {fmt_duration(left)}); no projection while held"
        else:
            text = f"deadline {deadline} (in {fmt_duration(left)}); no projection until throughput is measured"
    else:
        verdict = "on time" if p.verdict == "on time" else f"{fmt_duration(p.late_seconds)} late"
        text = f"projected finish {fmt_dt(p.projected_finish)} vs deadline {deadline}: {verdict}"
    return f"{text}; {limit}" if limit and p.limited_by != projection.PAUSED else text


def advice_text(stats: JobStats) -> str:
    """Advice that can work: the workers needed when workers or max parallel bind (with the truth about the
    fleet), the rate limit that would meet the deadline when the rate limit binds and the job is late."""
    p = stats.projection
    if p.workers_needed is not None and p.per_worker_rate is not None:
        worker = "worker" if p.workers_needed == 1 else "workers"
        cap = stats.job.max_parallel
        fleet = "" if p.fleet_workers is None else f"; the fleet has {plural(p.fleet_workers, 'worker')}"
        return (f"needs {p.workers_needed} parallel {worker} to meet the deadline at {fmt_rate(p.per_worker_rate)} "
                f"per worker (now {stats.progress.live_leases} in flight"
                f"{f', max parallel {cap}' if cap else ''}){fleet}")
    if p.rate_needed is not None and p.meets_deadline is False:
        return f"a rate limit of {fmt_rate(p.rate_needed)} would meet the deadline"
    return ""
