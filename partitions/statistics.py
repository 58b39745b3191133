"""Statistics of one run: per-step durations, items/s overall and at peak, sub-job duration percentiles,
attempts and retries, and failures grouped by error class. Read by the job page, `jobs status --json` and
finalize (which keeps them in job.stats["run"]); a handful of queries whatever the job's size."""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum

from partitions.models import Job, JobEvent, Partition
from partitions.selectors import ThroughputPoint, job_throughput_series
from partitions.sql import SQL_JOB_FAILURES_BY_CLASS, SQL_SUBJOB_DURATIONS

#: The events that open and close each step (first opening, last closing: a re-claimed step counts once).
STEP_BOUNDS = {
    "prepare": (("planning_started",), ("planning_finished", "planning_failed")),
    "process": (("planning_finished",), ("finalizing_started", "job_cancelled", "job_failed")),
    "finalize": (("finalizing_started",), ("job_succeeded", "job_failed")),
}
FAILURE_CLASSES_SHOWN = 10


def _step_durations(job_id: int) -> dict[str, float | None]:
    types = {t for opening, closing in STEP_BOUNDS.values() for t in (*opening, *closing)}
    seen = {row["type"]: row for row in JobEvent.objects.filter(job_id=job_id, type__in=sorted(types))
            .values("type").annotate(first=Min("created_at"), last=Max("created_at")).order_by()}
    durations: dict[str, float | None] = {}
    for step, (opening, closing) in STEP_BOUNDS.items():
        starts = [seen[t]["first"] for t in opening if t in seen]
        ends = [seen[t]["last"] for t in closing if t in seen]
        durations[step] = (round((max(ends) - min(starts)).total_seconds(), 3)
                           if starts and ends and max(ends) >= min(starts) else None)
    return durations


def _durations(job_id: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(SQL_SUBJOB_DURATIONS, {"job_id": job_id})
        n, percentiles, longest, attempts, retried = cursor.fetchone()
    p50, p95, p99 = (None if p is None else round(p, 1) for p in percentiles or (None, None, None))
    return {"count": n, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": longest,
            "attempts": int(attempts), "retried": retried}


def _failures(job_id: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(SQL_JOB_FAILURES_BY_CLASS, {"job_id": job_id, "limit": FAILURE_CLASSES_SHOWN})
        return [{"error_class": cls, "count": n, "example": example} for cls, n, example in cursor.fetchall()]


def job_run_statistics(job: Job, *, points: list[ThroughputPoint] | None = None) -> dict:
    """The statistics of one run, as JSON-ready values (seconds, items/s, milliseconds); `points`: the job's
    throughput series when the caller has read it already."""
    steps = _step_durations(job.pk)
    partitions = Partition.objects.filter(job_id=job.pk).aggregate(
        n=Count("id"), all_attempts=Sum("attempts"), retried=Count("id", filter=Q(attempts__gt=1)),
        retry_partitions=Count("id", filter=Q(kind=Partition.Kind.RETRY)),
        handled=Sum("done_items") + Sum("failed_items") + Sum("skipped_items"))
    handled = partitions["handled"] or 0
    process = steps["process"]
    points = job_throughput_series(job.pk) if points is None else points
    return {
        "steps_seconds": steps,
        "items_handled": handled,
        "items_per_second": round(handled / process, 2) if process else None,
        "peak_items_per_second": round(max(p.rate for p in points), 2) if points else None,
        "peak_partitions_in_flight": max(p.live_leases for p in points) if points else None,
        "partitions": {"count": partitions["n"], "attempts": partitions["all_attempts"] or 0,
                       "retried": partitions["retried"], "retry_partitions": partitions["retry_partitions"]},
        "subjob_durations": _durations(job.pk),
        "failures_by_class": _failures(job.pk),
    }
