"""`bench deadline`: the seed scenario scaled down. 10,000 sub-jobs that each take 600 ms (a minute in real
life) must finish within 54 s (90 minutes), which needs at least 112 in flight; a fleet of 4 qclusters x 8
workers x 4 items in flight has 128 item slots. Reports the wall time against the deadline (the baseline)
and the ideal wall, whether the deadline was met, and what the job page said about the workers needed
while the job ran (from the same JobStats the page and `jobs status --json` read).

`--quick` runs the same shape small (one qcluster of 2 workers, 400 items x 20 ms, a 3 s deadline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from opsapp.bench import harness, scale, sleep_items
from partitions import services, tasks
from partitions.models import Job, SubJob
from partitions.selectors import job_stats
from partitions.states import JOB_TERMINAL

ITEM_CONCURRENCY, CHUNK_SIZE = 4, 20


@dataclass(frozen=True)
class Size:
    items: int
    work_ms: int
    clusters: int
    workers: int
    deadline_seconds: float
    #: When, after the job's start, the workers-needed projection is read.
    projection_after: float


FULL = Size(items=10_000, work_ms=600, clusters=4, workers=8, deadline_seconds=54.0, projection_after=10.0)
QUICK = Size(items=400, work_ms=20, clusters=1, workers=2, deadline_seconds=3.0, projection_after=0.5)


def run(opts: harness.Options) -> harness.Result:
    size = QUICK if opts.quick else FULL
    slots = size.clusters * size.workers * ITEM_CONCURRENCY
    result = harness.Result("deadline", params={
        "items": size.items, "work_ms": size.work_ms, "partitions": size.items // CHUNK_SIZE,
        "clusters": size.clusters, "q_workers": size.workers, "item_concurrency": ITEM_CONCURRENCY,
        "item_slots": slots, "deadline_s": size.deadline_seconds})
    params = {"items": size.items, "chunk_size": CHUNK_SIZE, "work_ms": size.work_ms, "concurrency": ITEM_CONCURRENCY}
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()), \
            scale.fleet(size.workers) as fleet:
        opts.log(f"deadline: {size.clusters} qclusters x {size.workers} workers x {ITEM_CONCURRENCY} items, "
                 f"{size.items} items x {size.work_ms} ms, deadline {size.deadline_seconds:.0f} s")
        fleet.grow_to(size.clusters)
        started = time.monotonic()
        job, _ = services.job_start(sleep_items.SleepItems.name, params, actor="bench",
                                    deadline=timezone.now() + timedelta(seconds=size.deadline_seconds))
        projection = None
        with scale.in_flight_samples(job.pk) as samples:
            def finished() -> bool:
                nonlocal projection
                if projection is None and time.monotonic() - started >= size.projection_after:
                    projection = job_stats(Job.objects.get(pk=job.pk)).projection
                return Job.objects.filter(pk=job.pk, status__in=sorted(JOB_TERMINAL)).exists()

            fleet.wait_for(finished, timeout=size.deadline_seconds * 3 + 30, what=f"job {job.pk} to finish")
        job.refresh_from_db()
        succeeded = SubJob.objects.filter(job=job, status="succeeded").count()
        harness.empty_tables()
    if job.status != "succeeded" or succeeded != size.items:
        raise harness.BenchError(f"deadline: job {job.status} ({job.error}), {succeeded} of {size.items} items")
    wall = (job.finished_at - job.created_at).total_seconds()
    deadline = result.baseline("deadline_s", "deadline", size.deadline_seconds, "s")
    ideal = result.baseline("ideal_s", "ideal wall (items x work / item slots)",
                            size.items * size.work_ms / 1000 / slots, "s")
    result.figure("wall_s", "wall (job start to succeeded)", wall, "s", vs=(deadline, ideal))
    during = [count for at, count in samples if job.created_at <= at <= job.finished_at] or [0]
    workers = result.baseline("workers", "workers", size.clusters * size.workers, "workers")
    result.figure("peak", "peak partitions in flight", max(during), "partitions", vs=(workers,))
    result.figure("mean", "mean partitions in flight", sum(during) / len(during), "partitions", vs=(workers,))
    if projection is not None and projection.workers_needed is not None:
        result.figure("workers_needed", f"workers needed, as the job page said at {size.projection_after:g} s",
                      projection.workers_needed, "workers", vs=(workers,))
        result.checks["projected_on_time"] = bool(projection.meets_deadline)
    result.checks["deadline_met"] = wall <= size.deadline_seconds
    return result
