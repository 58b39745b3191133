"""`bench migrate`: rows updated per second through `billing.migrate_subscriptions` partitions by W processes
(each batch's UPDATE commits with its checkpoint), vs one bulk UPDATE of the same rows.

Both runs start from the same table state: the target rows are reset and the table vacuumed before each.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from opsapp.bench import harness
from opsapp.billing.models import Product, Subscription
from opsapp.billing.seeding import seed_demo
from partitions import registry
from partitions.models import Partition

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

    _fresh(since)
    opts.log(f"migrate: engine, {workers} processes")
    with harness.engine_for_bench():
        job, planning = harness.planned_job(JOB_TYPE,
                                            {"since": since.isoformat(), "rows_per_partition": rows_per_partition})
        wall, _ = harness.run_workers(workers, harness.drain_job, job.pk)
    _check_migrated(since, rows, "the engine")
    done = Partition.objects.filter(job=job).aggregate(n=Sum("done_items"))["n"]
    if done != rows:
        raise harness.BenchError(f"migrate: partitions counted {done} rows done, {rows} rows to migrate")
    result.figure("engine_rows_s", f"engine, {workers} processes", rows / wall, "rows/s", vs=(bulk,))
    result.figure("plan_s", "engine plan (KeyRange per changed product)", planning, "s")
    result.checks.update(rows=rows, partitions=Partition.objects.filter(job=job).count())
    return result
