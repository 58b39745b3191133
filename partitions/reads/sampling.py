"""Throughput samples: the job page's chart and every rate, ETA and projection read them.

Workers take them while they run a job (at most every `PARTITIONS_SAMPLE_SECONDS`, fleet-wide, through
`partitions.worker.pulse`), so a 30-second job has a chart; `tick` takes them too, for jobs nobody runs.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.db.models.functions import Now

from partitions import conf
from partitions.engine.sql import queries
from partitions.models import JobSample
from partitions.reads.progress import jobs_progress


def job_sample_take(job_id: int, *, min_interval: float | None = None) -> bool:
    """Record one sample of a job unless one was taken in the last `min_interval` seconds (database clock) or
    another process is taking one right now; True when this call wrote it."""
    interval = conf.get("SAMPLE_SECONDS") if min_interval is None else min_interval
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries["job_sample_try_lock"], {"job_id": job_id})
        if not cursor.fetchone()[0]:
            return False
        recent = JobSample.objects.filter(job_id=job_id, taken_at__gt=Now() - timedelta(seconds=interval * 0.9))
        if interval > 0 and recent.exists():
            return False
        p = jobs_progress([job_id])[job_id]
        JobSample.objects.create(job_id=job_id, done_items=p.items_done, failed_items=p.items_failed,
                                 skipped_items=p.items_skipped, live_leases=p.live_leases)
    return True
