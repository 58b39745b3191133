"""`bench deadline`: the seed scenario scaled down. 10,000 sub-jobs that each take 600 ms (a minute in real
life) must finish within 54 s (90 minutes), which needs at least 112 in flight; a fleet of 4 qclusters x 8
workers x 4 items in flight has 128 item slots. Two job types run it, one after the other on the same
fleet: `bench.sleep_items` (each item only waits: the engine's own cost) and the demo's
`billing.send_invoices` (10,000 customers; each invoice renders for the same time, then is mailed, to the
in-memory mail backend, and recorded). Reports, for each, the wall time against the deadline (the baseline)
and the ideal wall, whether the deadline was met, the sub-jobs' p50 and p95 against their work, and what
the job page said about the workers needed while the job ran (from the same JobStats the page and `jobs
status --json` read).

`--quick` runs the same shape small (one qcluster of 2 workers, 400 items x 20 ms, a 3 s deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from opsapp.bench import harness, scale, sleep_items
from opsapp.billing.jobs import SendInvoices
from opsapp.billing.seeding import seed_demo
from partitions import tasks
from partitions.core.states import JOB_TERMINAL
from partitions.models import Job, SubJob
from partitions.operations import services
from partitions.reads.statistics import job_stats

ITEM_CONCURRENCY, CHUNK_SIZE = 4, 20
#: The demo's mail goes to memory: the mail server is not what this measures.
FLEET_ENV = {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend", "EMAIL_FILE_PATH": ""}


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


@dataclass(frozen=True)
class Variant:
    """A job type that runs the scenario: its key in the figures, and how to seed and start it."""

    key: str
    label: str
    type_name: str
    params: Callable[[Size], dict]
    seed: Callable[[Size], None] = lambda size: None


VARIANTS = (
    Variant("sleep", "sleep_items", sleep_items.SleepItems.name,
            lambda size: {"items": size.items, "chunk_size": CHUNK_SIZE, "work_ms": size.work_ms,
                          "concurrency": ITEM_CONCURRENCY}),
    Variant("demo", "send_invoices", SendInvoices.name, lambda size: {"period": "2026-11", "work_ms": size.work_ms},
            seed=lambda size: seed_demo(products=1, subscriptions=0, customers=size.items, events=0)),
)


def run(opts: harness.Options) -> harness.Result:
    size = QUICK if opts.quick else FULL
    slots = size.clusters * size.workers * ITEM_CONCURRENCY
    result = harness.Result("deadline", params={
        "items": size.items, "work_ms": size.work_ms, "clusters": size.clusters, "q_workers": size.workers,
        "item_concurrency": ITEM_CONCURRENCY, "item_slots": slots, "deadline_s": size.deadline_seconds})
    deadline = result.baseline("deadline_s", "deadline", size.deadline_seconds, "s")
    ideal = result.baseline("ideal_s", "ideal wall (items x work / item slots)",
                            size.items * size.work_ms / 1000 / slots, "s")
    work = result.baseline("work_ms", "work per sub-job", size.work_ms, "ms")
    workers = result.baseline("workers", "workers", size.clusters * size.workers, "workers")
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()), \
            scale.fleet(size.workers, FLEET_ENV) as fleet:
        fleet.grow_to(size.clusters)
        for variant in VARIANTS:
            opts.log(f"deadline, {variant.label}: {size.clusters} qclusters x {size.workers} workers x "
                     f"{ITEM_CONCURRENCY} items, {size.items} items x {size.work_ms} ms, "
                     f"deadline {size.deadline_seconds:.0f} s")
            _run_variant(result, variant, size, fleet, deadline=deadline, ideal=ideal, work=work, workers=workers)
    return result


def _run_variant(result: harness.Result, variant: Variant, size: Size, fleet: scale.Fleet, *,
                 deadline: harness.Figure, ideal: harness.Figure, work: harness.Figure,
                 workers: harness.Figure) -> None:
    variant.seed(size)
    started = time.monotonic()
    job, _ = services.job_start(variant.type_name, variant.params(size), actor="bench",
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
    durations = sorted(SubJob.objects.filter(job=job, status="succeeded").values_list("duration_ms", flat=True))
    harness.empty_tables()
    if job.status != "succeeded" or len(durations) != size.items:
        raise harness.BenchError(f"deadline, {variant.label}: job {job.status} ({job.error}), "
                                 f"{len(durations)} of {size.items} items")
    key, label = variant.key, variant.label
    wall = (job.finished_at - job.created_at).total_seconds()
    result.figure(f"{key}_wall_s", f"{label}: wall (job start to succeeded)", wall, "s", vs=(deadline, ideal))
    result.figure(f"{key}_p50_ms", f"{label}: sub-job p50", _quantile(durations, 0.50), "ms", vs=(work,))
    result.figure(f"{key}_p95_ms", f"{label}: sub-job p95", _quantile(durations, 0.95), "ms", vs=(work,))
    during = [count for at, count in samples if job.created_at <= at <= job.finished_at] or [0]
    result.figure(f"{key}_peak", f"{label}: peak partitions in flight", max(during), "partitions", vs=(workers,))
    result.figure(f"{key}_mean", f"{label}: mean partitions in flight", sum(during) / len(during), "partitions",
                  vs=(workers,))
    if projection is not None and projection.workers_needed is not None:
        result.figure(f"{key}_workers_needed", f"{label}: workers needed, as the job page said at "
                      f"{size.projection_after:g} s", projection.workers_needed, "workers", vs=(workers,))
        result.checks[f"{key}_projected_on_time"] = bool(projection.meets_deadline)
    result.checks[f"{key}_deadline_met"] = wall <= size.deadline_seconds
    result.checks[f"{key}_spare_10pct"] = wall <= 0.9 * size.deadline_seconds


def _quantile(sorted_values: list[int], q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])
