"""`bench migrate`: rows updated per second through `billing.migrate_subscriptions` partitions by W processes
(each batch's UPDATE commits with its checkpoint), vs one bulk UPDATE of the same rows; the same job with an
adaptive batch size (1 s per batch); and the same job under a fleet-wide rate limit (asked vs measured).

Every run starts from the same table state: the target rows are reset and the table vacuumed before each.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from opsapp.bench import harness
from opsapp.billing.jobs import MigrateSubscriptions
from opsapp.billing.models import Product, Subscription
from opsapp.billing.seeding import seed_demo
from partitions.jobtypes import registry
from partitions.models import Job, Partition
from partitions.operations import services

JOB_TYPE = "billing.migrate_subscriptions"
PRODUCTS = 20  # half of them changed: their subscriptions are the rows to migrate
ROWS_PER_PARTITION = 10_000

_BULK_UPDATE = """
    UPDATE opsapp_subscription s SET product_version = p.version
    FROM opsapp_product p WHERE s.product_id = p.id AND p.updated_at >= %(since)s
"""
_RESET = """
    UPDATE opsapp_subscription SET product_version = 1
    WHERE product_id IN (SELECT id FROM opsapp_product WHERE updated_at >= %(since)s)
"""


def _execute(sql: str, since) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"since": since})
        return cursor.rowcount


def _fresh(since) -> None:
    _execute(_RESET, since)
    harness.vacuum("opsapp_subscription")


def _check_migrated(since, expected: int, what: str) -> None:
    changed = Product.objects.filter(updated_at__gte=since)
    stale = Subscription.objects.filter(product__in=changed, product_version=1).count()
    if stale:
        raise harness.BenchError(f"migrate: {what} left {stale} of {expected} rows at the old version")


class AdaptiveMigrateSubscriptions(MigrateSubscriptions):
    """The demo migration aiming every batch at one second (GitLab's batched migrations aim at 2 min jobs)."""

    name = "bench.migrate_adaptive"
    target_batch_seconds = 1.0
    min_batch_size = 100
    max_batch_size = 50_000


#: Share of the unthrottled engine's rate the rate-limit run asks for, and the seconds it should take at most
#: (--quick: a smoke test's share).
RATE_SHARE, RATE_RUN_SECONDS, QUICK_RATE_RUN_SECONDS = 0.25, 10.0, 2.0


def _engine_run(type_name: str, since, rows: int, rows_per_partition: int, workers: int, what: str,
                rate_limit: float | None = None) -> tuple[float, float, Job]:
    """Reset the rows, run the migration with `workers` processes; the wall time, the plan's and the job."""
    _fresh(since)
    with harness.engine_for_bench(*([AdaptiveMigrateSubscriptions] if type_name != JOB_TYPE else [])):
        params = {"since": since.isoformat(), "rows_per_partition": rows_per_partition}
        job, planning = harness.planned_job(type_name, params)
        if rate_limit is not None:
            services.job_throttle(job.pk, actor="bench", rate_limit=rate_limit)
        wall, _ = harness.run_workers(workers, harness.drain_job, job.pk)
    _check_migrated(since, rows, what)
    done = Partition.objects.filter(job=job).aggregate(n=Sum("done_items"))["n"]
    if done != rows:
        raise harness.BenchError(f"migrate: {what} counted {done} rows done, {rows} rows to migrate")
    return wall, planning, job


def run(opts: harness.Options) -> harness.Result:
    subscriptions, workers = opts.pick(default=1_000_000, quick=20_000), opts.workers
    # Half the rows are migrated; at least 10 partitions at small sizes, so every process gets several.
    rows_per_partition = max(100, min(ROWS_PER_PARTITION, subscriptions // 20))
    result = harness.Result("migrate", params={"subscriptions": subscriptions, "workers": workers,
                                               "rows_per_partition": rows_per_partition,
                                               "batch_size": registry.get(JOB_TYPE).batch_size})
    opts.log(f"migrate: seeding {subscriptions:,} subscriptions")
    seed_demo(products=PRODUCTS, subscriptions=subscriptions, customers=1000, events=0, stale_fraction=0.5)
    since = timezone.now() - timedelta(days=1)

    _fresh(since)
    opts.log("migrate: one bulk UPDATE")
    with harness.stopwatch() as elapsed:
        rows = _execute(_BULK_UPDATE, since)
    _check_migrated(since, rows, "the bulk UPDATE")
    bulk = result.baseline("bulk_rows_s", "one bulk UPDATE", rows / elapsed(), "rows/s")

    opts.log(f"migrate: engine, {workers} processes")
    wall, planning, job = _engine_run(JOB_TYPE, since, rows, rows_per_partition, workers, "the engine")
    fixed = result.figure("engine_rows_s", f"engine, {workers} processes, batch_size "
                          f"{registry.get(JOB_TYPE).batch_size}", rows / wall, "rows/s", vs=(bulk,))
    result.figure("plan_s", "engine plan (KeyRange per changed product)", planning, "s")
    result.checks.update(rows=rows, partitions=Partition.objects.filter(job=job).count())

    opts.log("migrate: engine, adaptive batch size (target 1 s)")
    wall, _, adaptive = _engine_run(AdaptiveMigrateSubscriptions.name, since, rows, rows_per_partition, workers,
                                    "the adaptive engine")
    result.figure("adaptive_rows_s", f"engine, {workers} processes, adaptive batch (target 1 s)", rows / wall,
                  "rows/s", vs=(bulk, fixed))
    sizes = list(Partition.objects.filter(job=adaptive).values_list("batch_size", flat=True))
    result.checks.update(adaptive_batch_size_max=max(sizes), adaptive_batch_size_min=min(sizes))

    run_seconds = QUICK_RATE_RUN_SECONDS if opts.quick else RATE_RUN_SECONDS
    asked = max(1.0, min(fixed.value * RATE_SHARE, rows / run_seconds))
    opts.log(f"migrate: engine under a rate limit of {asked:,.0f} rows/s")
    wall, _, _ = _engine_run(JOB_TYPE, since, rows, rows_per_partition, workers, "the rate-limited engine",
                             rate_limit=asked)
    limit = result.baseline("rate_asked", "rate limit asked", asked, "rows/s")
    result.figure("rate_measured", f"rate measured under the limit, {workers} processes", rows / wall, "rows/s",
                  vs=(limit,))
    return result
