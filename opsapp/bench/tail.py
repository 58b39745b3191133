"""`bench tail`: a skewed job (8 id ranges, one with 10x the per-row cost) on 4 worker processes, with idle
workers splitting the slow partition off and on, against the ideal wall time (total work / 4).

Every row costs a known sleep, so the ideal is exact; the rows are bumped atomically with each checkpoint and
checked exactly once after every run.
"""

from __future__ import annotations

import time

from django import forms
from django.db.models import F
from django.test.utils import override_settings

from opsapp.bench import harness
from opsapp.billing.models import Subscription
from opsapp.billing.seeding import seed_demo
from partitions.core.events import EventType
from partitions.jobtypes.base import JobType
from partitions.jobtypes.splits import KeyRange
from partitions.models import JobEvent, Partition

PARTITIONS, WORKERS, SLOW_FACTOR = 8, 4, 10


class SkewedParams(forms.Form):
    slow_from = forms.IntegerField(help_text="Rows with this id or more cost SLOW_FACTOR times as much.")
    row_ms = forms.FloatField(min_value=0)


class SkewedRows(JobType):
    """Bumps every subscription; the last id range is SLOW_FACTOR times as expensive per row."""

    name = "bench.skewed_rows"
    Params = SkewedParams
    batch_size = 20

    def split(self, job, params):
        return KeyRange(Subscription.objects.all(), ("id",), partitions=PARTITIONS)

    def process_batch(self, ctx, items):
        Subscription.objects.filter(pk__in=[s.pk for s in items]).update(product_version=F("product_version") + 1)
        factor = SLOW_FACTOR if items[0].pk >= ctx.params["slow_from"] else 1
        time.sleep(len(items) * ctx.params["row_ms"] * factor / 1000)


def _run(slow_from: int, row_ms: float, rows: int, *, split: bool) -> tuple[float, int, float]:
    """One run: its wall time, its splits, and the seconds its partitions ran in all (every worker's busy time)."""
    Subscription.objects.update(product_version=1)
    with override_settings(PARTITIONS_SPLIT_RUNNING=split), harness.engine_for_bench(SkewedRows):
        job, _ = harness.planned_job(SkewedRows.name, {"slow_from": slow_from, "row_ms": row_ms})
        wall, _ = harness.run_workers(WORKERS, harness.drain_job, job.pk)
    bumped = Subscription.objects.filter(product_version=2).count()
    if bumped != rows or Subscription.objects.exclude(product_version=2).exists():
        raise harness.BenchError(f"tail: {bumped} of {rows} rows bumped exactly once")
    busy = sum((p.finished_at - p.started_at).total_seconds() for p in Partition.objects.filter(job=job))
    return wall, JobEvent.objects.filter(job=job, type=EventType.PARTITION_SPLIT).count(), busy


def run(opts: harness.Options) -> harness.Result:
    per_partition, row_ms = opts.pick(default=400, quick=100), 2.0
    rows = per_partition * PARTITIONS
    result = harness.Result("tail", params={"rows": rows, "partitions": PARTITIONS, "workers": WORKERS,
                                            "row_ms": row_ms, "slow_factor": SLOW_FACTOR})
    opts.log(f"tail: {rows:,} rows in {PARTITIONS} ranges, the last {SLOW_FACTOR}x slower, {WORKERS} processes")
    seed_demo(products=2, subscriptions=rows, customers=10, events=0)
    ids = list(Subscription.objects.order_by("id").values_list("id", flat=True))
    slow_from = ids[-per_partition]
    sleep = (rows - per_partition + per_partition * SLOW_FACTOR) * row_ms / 1000
    wall_off, _, busy = _run(slow_from, row_ms, rows, split=False)
    wall_on, splits, busy_on = _run(slow_from, row_ms, rows, split=True)
    # Total work twice: the rows' own cost only, and what the partitions took to run it (with the engine's
    # per-batch cost: fetch, checkpoint, commit), measured in the run without splits.
    ideal = result.baseline("ideal_s", f"ideal wall (rows' cost {sleep:.1f} s / {WORKERS})", sleep / WORKERS, "s")
    measured = result.baseline("measured_ideal_s", f"ideal wall (partitions ran {busy:.1f} s / {WORKERS})",
                               busy / WORKERS, "s")
    result.figure("no_split_s", "wall, splitting off", wall_off, "s", vs=(ideal, measured))
    result.figure("split_s", "wall, idle workers split the slow partition", wall_on, "s", vs=(ideal, measured))
    result.checks.update(splits=splits, busy_with_splits_s=round(busy_on, 2))
    return result
