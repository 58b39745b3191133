"""`bench plan`: 1,000 key-range partitions over a large table on `(created_at, id)`, timestamps shared by 7 rows.

- engine: `KeyRange(...).plan()`, one recursive keyset walk over the `(created_at, id)` index;
- baseline: the naive `ntile(1000)` window over the whole table (bucket sizes and created_at bounds);
- a job start of that split (`services.job_start`: its check that the job can be planned, and the job row).

The engine's partition sizes are measured, not taken from the plan: each range's rows are counted with
the engine's own bound predicates (`KeyRangeSource`).
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import connection, models

from opsapp.bench import harness
from opsapp.billing.seeding import ROWS_PER_TIMESTAMP
from partitions.jobtypes.base import JobType
from partitions.jobtypes.splits import KeyRange
from partitions.models import Job, Partition
from partitions.operations import services
from partitions.worker.sources import KeyRangeSource

PARTITIONS = 1000
KEY = ("created_at", "id")


class PlanRow(models.Model):
    """The generated table; registered in an app registry of its own, so migrations never see it."""

    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()

    class Meta:
        apps = Apps()
        app_label = "bench"
        db_table = "bench_plan_row"
        managed = False

    def __str__(self) -> str:
        return f"({self.created_at}, {self.id})"


# Unlogged: generation is faster, reads are the same.
_CREATE = """
    CREATE UNLOGGED TABLE bench_plan_row (id bigint NOT NULL, created_at timestamptz NOT NULL);
    INSERT INTO bench_plan_row (id, created_at)
    SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g / %(per_ts)s) * interval '1 second'
    FROM generate_series(1, %(rows)s) AS g;
    CREATE INDEX bench_plan_row_created ON bench_plan_row (created_at, id);
"""
_NTILE = """
    SELECT b, count(*), min(created_at), max(created_at)
    FROM (SELECT created_at, ntile(%(k)s) OVER (ORDER BY created_at, id) AS b FROM bench_plan_row) AS t
    GROUP BY b ORDER BY b
"""


def _ntile_sizes() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(_NTILE, {"k": PARTITIONS})
        return [row[1] for row in cursor.fetchall()]


def _keyset_plan():
    return KeyRange(PlanRow.objects.all(), KEY, partitions=PARTITIONS).plan()


class PlanRows(JobType):
    """The keyset walk's split as a job type: what `bench plan` starts."""

    name = "bench.plan_rows"

    def split(self, job, params):
        return KeyRange(PlanRow.objects.all(), KEY, partitions=PARTITIONS)

    def process_batch(self, ctx, items):
        """Never called: the bench only starts the job."""


def _job_start() -> Job:
    return services.job_start(PlanRows.name, actor="bench")[0]


def _counted_sizes(plans) -> list[int]:
    queryset = PlanRow.objects.all()
    return [KeyRangeSource(queryset, Partition(kind=p.kind, lower=p.lower, upper=p.upper, key=p.key)).queryset.count()
            for p in plans]


def _max_over_mean(sizes: list[int]) -> float:
    return max(sizes) / (sum(sizes) / len(sizes))


def run(opts: harness.Options) -> harness.Result:
    rows = opts.pick(default=10_000_000, quick=200_000)
    result = harness.Result("plan", params={"rows": rows, "partitions": PARTITIONS, "rows_per_timestamp":
                                            ROWS_PER_TIMESTAMP, "timing": "best of 2"})
    opts.log(f"plan: generating {rows:,} rows")
    with connection.cursor() as cursor:
        cursor.execute(_CREATE, {"rows": rows, "per_ts": ROWS_PER_TIMESTAMP})
    try:
        harness.vacuum("bench_plan_row")  # visibility map: index-only scans for both queries
        opts.log("plan: naive ntile vs keyset walk, best of 2 each")
        ntile_seconds, ntile_sizes = harness.best_of(2, _ntile_sizes)
        keyset_seconds, plans = harness.best_of(2, _keyset_plan)
        with harness.engine_for_bench(PlanRows):
            start_seconds, _ = harness.best_of(2, _job_start)
        sizes = _counted_sizes(plans)
    finally:
        Job.objects.filter(type_name=PlanRows.name).delete()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_plan_row")
    if sum(sizes) != rows or sum(ntile_sizes) != rows:
        raise harness.BenchError(f"plan: ranges hold {sum(sizes)} rows, ntile buckets {sum(ntile_sizes)}, of {rows}")
    ntile = result.baseline("ntile_s", f"naive ntile({PARTITIONS}) window", ntile_seconds, "s")
    keyset = result.figure("keyset_s", "KeyRange.plan (keyset walk)", keyset_seconds, "s", vs=(ntile,))
    result.figure("start_s", "job start of that split (its plan check)", start_seconds, "s", vs=(keyset,))
    ntile_balance = result.baseline("ntile_max_mean", "ntile max/mean partition size", _max_over_mean(ntile_sizes),
                                    "")
    result.figure("keyset_max_mean", "KeyRange max/mean size (counted)", _max_over_mean(sizes), "",
                  vs=(ntile_balance,))
    result.figure("keyset_mean_rows", "KeyRange mean partition size", sum(sizes) / len(sizes), "rows")
    result.checks.update(partitions=len(plans), rows_covered=sum(sizes))
    return result
