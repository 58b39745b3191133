"""Throughput and ETA from JobSample rows (taken by tick) or, before any sample exists, from the job's own clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from partitions.models import Job, JobSample

RATE_WINDOW = timedelta(minutes=5)


def job_rate(job_id: int, *, window: timedelta = RATE_WINDOW) -> float:
    """Items per second over the last `window` of samples (0.0 when unknown)."""
    since = timezone.now() - window
    samples = list(JobSample.objects.filter(job_id=job_id, taken_at__gte=since).order_by("taken_at")
                   .values_list("taken_at", "done_items"))
    if len(samples) >= 2:
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        seconds = (t1 - t0).total_seconds()
        return max(0.0, (d1 - d0) / seconds) if seconds > 0 else 0.0
    job = Job.objects.filter(pk=job_id).values("planned_at", "finished_at").first()
    if not job or not job["planned_at"]:
        return 0.0
    from partitions.selectors import job_progress

    elapsed = ((job["finished_at"] or timezone.now()) - job["planned_at"]).total_seconds()
    return job_progress(job_id).items_done / elapsed if elapsed > 0 else 0.0


def eta(remaining_items: int, rate: float) -> datetime | None:
    """Projected finish at the given rate, or None when nothing moves."""
    if remaining_items <= 0:
        return timezone.now()
    if rate <= 0:
        return None
    return timezone.now() + timedelta(seconds=remaining_items / rate)
