"""Statistics of a job and of each of its attempts: per-step durations, items/s overall and at peak, sub-job
duration percentiles, attempts and retries, and failures grouped by error class. Read by the job page,
`jobs status --json` and finalize (which keeps them in job.stats["run"]); a handful of queries whatever the
job's size."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Count, Q, Sum

from partitions.attempts import Attempt, work_seconds
from partitions.models import Job, Partition
from partitions.selectors import JobStats, ThroughputPoint, job_stats, job_throughput_series
from partitions.sql import queries

STEPS = ("prepare", "process", "finalize")
FAILURE_CLASSES_SHOWN = 10


def _per_second(items: int | None, seconds: float | None) -> float | None:
    return round(items / seconds, 2) if items is not None and seconds else None


def _attempt_row(attempt: Attempt, now: datetime) -> dict:
    steps = {step: _round(attempt.step_seconds(step, now)) for step in STEPS}
    return {"attempt": attempt.label, "outcome": attempt.outcome, "steps_seconds": steps,
            "paused_seconds": _round(attempt.paused_in(now)), "items_handled": attempt.items(),
            "items_per_second": _per_second(attempt.items(), attempt.step_seconds("process", now))}


def _total(seconds: list[float | None]) -> float | None:
    """The sum over the attempts that had this step (None when none had it)."""
    known = [s for s in seconds if s is not None]
    return _round(sum(known)) if known else None


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _durations(job_id: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(queries["subjob_durations"], {"job_id": job_id})
        n, percentiles, longest, attempts, retried = cursor.fetchone()
    p50, p95, p99 = (None if p is None else round(p, 1) for p in percentiles or (None, None, None))
    return {"count": n, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": longest,
            "attempts": int(attempts), "retried": retried}


def _failures(job_id: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(queries["job_failures_by_class"], {"job_id": job_id, "limit": FAILURE_CLASSES_SHOWN})
        return [{"error_class": cls, "count": n, "example": example} for cls, n, example in cursor.fetchall()]


def job_run_statistics(job: Job, *, points: list[ThroughputPoint] | None = None,
                       stats: JobStats | None = None) -> dict:
    """The statistics of a job, as JSON-ready values (seconds, items/s, milliseconds), and of each attempt on
    its own (run 1, retry 1 …): steps are each attempt's own, paused time and time spent failed are not work.
    `points`, `stats`: the job's throughput series and stats when the caller has read them already."""
    stats = job_stats(job) if stats is None else stats
    now = job.finished_at or stats.now
    attempts = [_attempt_row(a, now) for a in stats.attempts]
    totals = {step: _total([a.step_seconds(step, now) for a in stats.attempts]) for step in STEPS}
    partitions = Partition.objects.filter(job_id=job.pk).aggregate(
        n=Count("id"), all_attempts=Sum("attempts"), retried=Count("id", filter=Q(attempts__gt=1)),
        retry_partitions=Count("id", filter=Q(kind=Partition.Kind.RETRY)))
    points = job_throughput_series(job.pk) if points is None else points
    return {
        "steps_seconds": totals,
        "items_handled": stats.handled,
        # The same figure as the job's average rate (the projection's work time).
        "items_per_second": _per_second(stats.handled, work_seconds(stats.attempts, now)),
        "attempts": attempts,
        "peak_items_per_second": round(max(p.rate for p in points), 2) if points else None,
        "peak_partitions_in_flight": max(p.live_leases for p in points) if points else None,
        "partitions": {"count": partitions["n"], "attempts": partitions["all_attempts"] or 0,
                       "retried": partitions["retried"], "retry_partitions": partitions["retry_partitions"]},
        "subjob_durations": _durations(job.pk),
        "failures_by_class": _failures(job.pk),
    }
