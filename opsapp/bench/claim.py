"""`bench claim`: no-op partitions claimed and completed per second by W worker processes.

- engine: `worker.drain` over one job of N no-op partitions, claiming 1, 10 or 50 per round trip
  (each partition still runs and completes on its own: the runner's per-partition cost is included);
- baseline A: a raw psycopg loop on a bare table, one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
  LOCKED LIMIT 1) RETURNING` claim and one fenced "done" UPDATE per partition, W connections;
- baseline B: django-q2 running one no-op task per partition on the ORM broker, defaults and tuned;
- the cost split: one drain in this process (claim 50), every statement timed around its execution (round
  trip, server and psycopg), so a partition's cost splits into the database's and the engine's Python (the
  rest); django-q2's per-task cost (tuned, per worker) stands beside it: a drain task pays it once for many
  partitions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psycopg
from django import forms
from django.db import connection

from opsapp.bench import baselines, djangoq, harness
from partitions.jobtypes.base import JobType
from partitions.jobtypes.splits import Modulo
from partitions.models import Job, Partition

CLAIM_BATCHES = (1, 10, 50)
#: The claim batch of the cost split.
SPLIT_BATCH = 50
#: django-q2 runs this share of the partitions' count as tasks (its rate does not depend on the queue's
#: length, and with its defaults it is slow enough to dominate the run otherwise).
Q2_SHARE = {djangoq.DEFAULTS: 1 / 8, djangoq.TUNED: 1 / 2}

_RAW_TABLE = """
    CREATE TABLE bench_raw_partition (id bigint PRIMARY KEY, status text NOT NULL, token bigint NOT NULL DEFAULT 0,
                                      lease_owner text, lease_expires_at timestamptz);
    CREATE INDEX bench_raw_pending ON bench_raw_partition (id) WHERE status = 'pending';
    INSERT INTO bench_raw_partition (id, status) SELECT g, 'pending' FROM generate_series(1, %(n)s) g;
"""



class NoopParams(forms.Form):
    partitions = forms.IntegerField(min_value=1)


class NoopPartitions(JobType):
    """N partitions with nothing in them: a run reads nothing (an empty queryset issues no query)."""

    name = "bench.noop_partitions"
    Params = NoopParams

    def split(self, job, params):
        return Modulo(Job.objects.none(), "id", buckets=params["partitions"])

    def process_batch(self, ctx, items):
        """Never called: the partitions hold no items."""


def _raw_worker() -> int:
    done = 0
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        owner = {"owner": f"raw-{os.getpid()}"}
        while (row := conn.execute(baselines.SQL_BASELINE_RAW_CLAIM, owner).fetchone()) is not None:
            conn.execute(baselines.SQL_BASELINE_RAW_DONE, row)
            done += 1
    return done


def _raw(partitions: int, workers: int) -> float:
    with connection.cursor() as cursor:
        cursor.execute(_RAW_TABLE, {"n": partitions})
    harness.vacuum("bench_raw_partition")
    try:
        seconds, done = harness.run_workers(workers, _raw_worker)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_raw_partition")
    _check_all_done(sum(done), partitions, "raw SQL loop")
    return seconds


def _engine(partitions: int, workers: int, claim_batch: int) -> float:
    job, _ = harness.planned_job(NoopPartitions.name, {"partitions": partitions})
    harness.vacuum("partitions_partition", "partitions_job")
    try:
        seconds, ran = harness.run_workers(workers, harness.drain_job, job.pk, claim_batch)
        _check_all_done(Partition.objects.filter(job=job, status="succeeded").count(), partitions,
                        f"engine, claim batch {claim_batch} ({sum(ran)} runs)")
    finally:
        harness.empty_tables()
    return seconds


@dataclass
class _StatementClock:
    """A `connection.execute_wrapper`: the seconds and the count of the statements it saw."""

    seconds: float = 0.0
    statements: int = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.statements += 1


def _split(partitions: int) -> tuple[float, float, float]:
    """One in-process drain at claim SPLIT_BATCH: per partition, seconds in all, seconds in statements, and
    statements."""
    job, _ = harness.planned_job(NoopPartitions.name, {"partitions": partitions})
    harness.vacuum("partitions_partition", "partitions_job")
    clock = _StatementClock()
    try:
        with connection.execute_wrapper(clock), harness.stopwatch() as elapsed:
            harness.drain_job(job.pk, SPLIT_BATCH)
        _check_all_done(Partition.objects.filter(job=job, status="succeeded").count(), partitions, "cost split")
    finally:
        harness.empty_tables()
    return elapsed() / partitions, clock.seconds / partitions, clock.statements / partitions


def _report_split(result: harness.Result, partitions: int, tuned_tasks_per_s: float, workers: int) -> None:
    wall, database, statements = _split(partitions)
    total = result.baseline("split_ms", f"cost split, claim {SPLIT_BATCH}, one process: a partition in all",
                            wall * 1000, "ms")
    result.figure("split_db_ms", "  of which statements (round trip, server, psycopg)", database * 1000, "ms",
                  vs=(total,))
    result.figure("split_python_ms", "  of which the engine's Python (the rest)", (wall - database) * 1000, "ms",
                  vs=(total,))
    result.figure("split_statements", "  statements per partition", statements, "statements")
    result.figure("split_q2_ms", "django-q2 tuned, one task per worker (paid once per drain task)",
                  workers / tuned_tasks_per_s * 1000, "ms", vs=(total,))


def _check_all_done(done: int, expected: int, what: str) -> None:
    if done != expected:
        raise harness.BenchError(f"{what}: {done} of {expected} partitions completed")


def run(opts: harness.Options) -> harness.Result:
    n, w = opts.pick(default=2000, quick=150), opts.workers
    result = harness.Result("claim", params={"workers": w, "partitions": n, "claim_batches": list(CLAIM_BATCHES)})
    with harness.engine_for_bench(NoopPartitions):
        opts.log(f"claim: raw SQL loop, {n} partitions, {w} connections")
        raw = result.baseline("raw_sql", "raw SQL loop (1 per claim)", n / _raw(n, w), "partitions/s")
        baselines = [raw]
        for setup, share in Q2_SHARE.items():
            tasks = max(20, int(n * share))
            result.params[f"{setup.key}_tasks"] = tasks
            opts.log(f"claim: {setup.label}, {tasks} no-op tasks, {w} workers")
            seconds = djangoq.run_tasks(setup, workers=w, tasks=tasks, time_enqueue=False)
            baselines.append(result.baseline(setup.key, setup.label, tasks / seconds, "tasks/s"))
        for claim_batch in CLAIM_BATCHES:
            opts.log(f"claim: engine drain, claim batch {claim_batch}")
            seconds = _engine(n, w, claim_batch)
            result.figure(f"engine_b{claim_batch}", f"engine drain, claim {claim_batch}", n / seconds,
                          "partitions/s", vs=tuple(baselines))
        opts.log(f"claim: cost split, one drain in this process, claim {SPLIT_BATCH}")
        _report_split(result, n, baselines[-1].value, w)
    return result
