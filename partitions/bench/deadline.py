"""`bench deadline`: the seed scenario scaled down. 10,000 sub-jobs that each take 600 ms (a minute in real
life) must finish within 54 s (90 minutes), which needs at least 112 in flight; a fleet of 4 qclusters x 8
workers x 4 items in flight has 128 item slots. Reports the wall time against the deadline (the baseline)
and the ideal wall, whether the deadline was met, and what the job page said about the workers needed
while the job ran (from the same JobStats the page and `jobs status --json` read).

`--quick` skips it (32 worker processes and a minute of waiting do not fit a smoke test).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from partitions import services, tasks
from partitions.bench import harness, scale, sleep_items
from partitions.models import Job, SubJob
from partitions.selectors import job_stats
from partitions.states import JOB_TERMINAL

ITEMS, WORK_MS, CHUNK_SIZE = 10_000, 600, 20
CLUSTERS, WORKERS, ITEM_CONCURRENCY = 4, 8, 4
DEADLINE_SECONDS = 54.0
#: When, after the job's start, the workers-needed projection is read.
PROJECTION_AFTER_SECONDS = 10.0


def run(opts: harness.Options) -> harness.Result:
    slots = CLUSTERS * WORKERS * ITEM_CONCURRENCY
    result = harness.Result("deadline", params={
        "items": ITEMS, "work_ms": WORK_MS, "partitions": ITEMS // CHUNK_SIZE, "clusters": CLUSTERS,
        "q_workers": WORKERS, "item_concurrency": ITEM_CONCURRENCY, "item_slots": slots,
        "deadline_s": DEADLINE_SECONDS})
    if opts.quick:
        result.checks["skipped"] = "--quick (needs 32 worker processes for about a minute)"
        return result
    params = {"items": ITEMS, "chunk_size": CHUNK_SIZE, "work_ms": WORK_MS, "concurrency": ITEM_CONCURRENCY}
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()), \
            scale.fleet(WORKERS) as fleet:
        opts.log(f"deadline: {CLUSTERS} qclusters x {WORKERS} workers x {ITEM_CONCURRENCY} items, "
                 f"{ITEMS} items x {WORK_MS} ms, deadline {DEADLINE_SECONDS:.0f} s")
        fleet.grow_to(CLUSTERS)
        started = time.monotonic()
        job, _ = services.job_start(sleep_items.SleepItems.name, params, actor="bench",
                                    deadline=timezone.now() + timedelta(seconds=DEADLINE_SECONDS))
        projection = None
        with scale.in_flight_samples(job.pk) as samples:
            def finished() -> bool:
                nonlocal projection
                if projection is None and time.monotonic() - started >= PROJECTION_AFTER_SECONDS:
                    projection = job_stats(Job.objects.get(pk=job.pk))
                return Job.objects.filter(pk=job.pk, status__in=sorted(JOB_TERMINAL)).exists()

            fleet.wait_for(finished, timeout=DEADLINE_SECONDS * 3, what=f"job {job.pk} to finish")
        job.refresh_from_db()
        succeeded = SubJob.objects.filter(job=job, status="succeeded").count()
        harness.empty_tables()
    if job.status != "succeeded" or succeeded != ITEMS:
        raise harness.BenchError(f"deadline: job {job.status} ({job.error}), {succeeded} of {ITEMS} items")
    wall = (job.finished_at - job.created_at).total_seconds()
    deadline = result.baseline("deadline_s", "deadline", DEADLINE_SECONDS, "s")
    ideal = result.baseline("ideal_s", "ideal wall (items x work / item slots)", ITEMS * WORK_MS / 1000 / slots, "s")
    result.figure("wall_s", "wall (job start to succeeded)", wall, "s", vs=(deadline, ideal))
    during = [count for at, count in samples if job.created_at <= at <= job.finished_at] or [0]
    workers = result.baseline("workers", "workers", CLUSTERS * WORKERS, "workers")
    result.figure("peak", "peak partitions in flight", max(during), "partitions", vs=(workers,))
    result.figure("mean", "mean partitions in flight", sum(during) / len(during), "partitions", vs=(workers,))
    if projection is not None and projection.workers_needed is not None:
        result.figure("workers_needed", f"workers needed, as the job page said at {PROJECTION_AFTER_SECONDS:.0f} s",
                      projection.workers_needed, "workers", vs=(workers,))
        result.checks["projected_on_time"] = bool(projection.meets_deadline)
    result.checks["deadline_met"] = wall <= DEADLINE_SECONDS
    return result
