"""`bench scale`: one I/O-bound job (`bench.sleep_items`: items that only sleep) on 1, 2 and 4 real
`manage.py qcluster` processes of W workers each, started and up before the job starts, so the figures
measure how work reaches workers, not Python start-up or the two cores.

Per cluster count: wall time from `services.job_start` to the job's success (database clock), throughput
(the 1-cluster figure is the baseline, so its ratio is the speed-up), the ideal wall (items x work / item
slots), the peak and mean partitions in flight (live leases, sampled every SAMPLE_SECONDS) against the
workers, how many workers ran a partition at all, when in-flight first reached the workers, and the pick-up:
job start to its first claim, last partition to the job's success. What an idle cluster costs is `bench idle`.

The fleet grows between rounds (1, then +1, then +2 clusters); `--quick` runs a small job on 1 and 2.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import connection, connections
from django.db.models import Max
from django_q.conf import Conf
from django_q.models import OrmQ

from opsapp.bench import harness, qclusters, sleep_items
from partitions import tasks
from partitions.core import humanize
from partitions.core.events import EventType
from partitions.core.states import JOB_TERMINAL
from partitions.engine.sql import queries
from partitions.models import Job, JobEvent, SubJob
from partitions.operations import services

#: Fleet sizes, in order (--quick: the first two, to keep the smoke test short).
CLUSTER_COUNTS, QUICK_CLUSTER_COUNTS = (1, 2, 4), (1, 2)
#: Items in flight per worker, and each item's wait.
ITEM_CONCURRENCY = 4
WORK_MS, QUICK_WORK_MS = 50, 20
#: Items per partition.
CHUNK_SIZE, QUICK_CHUNK_SIZE = 40, 20
SAMPLE_SECONDS = 0.2
#: Seconds for a cluster to come up, for the queue to empty, and for a job to finish.
START_TIMEOUT, QUEUE_TIMEOUT, JOB_TIMEOUT = 60.0, 60.0, 300.0

# Partitions of a job in flight: the engine's own live-lease count, with the database time of the sample.
SQL_IN_FLIGHT = (f"SELECT statement_timestamp(), count(*) FROM ({queries["partitions_live_lease"]}) l"
                 " JOIN partitions_partition p ON p.id = l.id WHERE p.job_id = %(job_id)s")
# Transactions this database has committed or rolled back (cumulative statistics). The forced flush makes
# this backend's own transaction count by the next reading, so exactly one is ours.
SQL_DATABASE_TRANSACTIONS = """
    SELECT pg_stat_force_next_flush(), xact_commit + xact_rollback FROM pg_stat_database
    WHERE datname = current_database()
"""


@dataclass(frozen=True)
class Size:
    items: int
    chunk_size: int
    work_ms: int

    def params(self) -> dict[str, int]:
        return {"items": self.items, "chunk_size": self.chunk_size, "work_ms": self.work_ms,
                "concurrency": ITEM_CONCURRENCY}


@dataclass(frozen=True)
class Round:
    """What one fleet measured."""

    clusters: int
    workers: int
    wall: float
    peak: int
    mean: float
    #: Worker processes that claimed at least one partition.
    used: int
    #: Seconds from job start until every worker held a partition; None: never.
    full_after: float | None
    #: Seconds from job start to the first claim, and from the last partition's end to the job's success.
    first_claim_after: float
    #: Seconds from the end of planning (its commit wakes the drains) to the first claim: the wake-up alone.
    claim_after_planned: float
    succeeded_after_last: float


class Fleet:
    """The qclusters of one run, grown between rounds and all stopped at the end (also on error)."""

    def __init__(self, workers: int, log_dir: Path, env: dict[str, str] | None = None):
        self.workers, self.log_dir = workers, log_dir
        self.clusters: list[qclusters.QCluster] = []
        self.env = {"DATABASE_URL": qclusters.database_url(connection.settings_dict),
                    "PARTITIONS_JOB_MODULES": sleep_items.MODULE, "Q_WORKERS": str(workers), "LOG_LEVEL": "WARNING",
                    **(env or {})}

    def grow_to(self, n: int) -> None:
        """Start clusters until there are n, and wait until each is up and the queue is empty."""
        while len(self.clusters) < n:
            self.clusters.append(qclusters.QCluster(self.env, self.log_dir / f"qcluster-{len(self.clusters)}.log"))
        self.wait_for(lambda: qclusters.ready(self.clusters, workers=self.workers), timeout=START_TIMEOUT,
                      what=f"{n} qclusters to come up")
        self.wait_until_queue_empty()

    def wait_until_queue_empty(self) -> None:
        """Every enqueued task has run (a task leaves the ORM queue when its result is acknowledged)."""
        self.wait_for(lambda: not OrmQ.objects.exists(), timeout=QUEUE_TIMEOUT, what="the task queue to empty")

    def wait_for(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        harness.wait_for(lambda: self._alive() and condition(), timeout=timeout, what=what, interval=0.05)

    def _alive(self) -> bool:
        if dead := [c for c in self.clusters if not c.running()]:
            raise harness.BenchError(f"scale: qcluster {dead[0].pid} exited:\n{dead[0].tail()}")
        return True

    def stop(self) -> None:
        qclusters.stop_all(self.clusters)


@contextmanager
def fleet(workers: int, env: dict[str, str] | None = None) -> Iterator[Fleet]:
    """A Fleet (its clusters' environment over the defaults: `env`) whose clusters are stopped, and logs
    removed, however the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as log_dir:
        running = Fleet(workers, Path(log_dir), env)
        try:
            yield running
        finally:
            running.stop()


def idle_transactions_per_second(seconds: float) -> float:
    """Transactions per second the other sessions of this database commit or roll back over `seconds`."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_DATABASE_TRANSACTIONS)
        before = cursor.fetchone()[1]
        with harness.stopwatch() as elapsed:
            time.sleep(seconds)
        cursor.execute(SQL_DATABASE_TRANSACTIONS)
        after = cursor.fetchone()[1]
    return max(0, after - before - 1) / elapsed()  # the first reading is our one transaction


@contextmanager
def in_flight_samples(job_id: int) -> Iterator[list[tuple[datetime, int]]]:
    """(database time, partitions in flight) every SAMPLE_SECONDS, on a thread with its own connection."""
    samples: list[tuple[datetime, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def sample() -> None:
        try:
            while True:
                with connection.cursor() as cursor:
                    cursor.execute(SQL_IN_FLIGHT, {"job_id": job_id})
                    samples.append(cursor.fetchone())
                if done.wait(SAMPLE_SECONDS):
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's connection only

    thread = threading.Thread(target=sample, name="bench-in-flight", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(10)
    if errors:
        raise harness.BenchError(f"scale: sampling in-flight partitions failed: {errors[0]!r}") from errors[0]


def _run_job(running: Fleet, size: Size) -> tuple[Job, list[tuple[datetime, int]], int]:
    """Start the job, sample it until it ends; the job, the samples and how many workers claimed a partition."""
    job, _ = services.job_start(sleep_items.SleepItems.name, size.params(), actor="bench")
    with in_flight_samples(job.pk) as samples:
        running.wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=sorted(JOB_TERMINAL)).exists(),
                         timeout=JOB_TIMEOUT, what=f"job {job.pk} to finish")
    job.refresh_from_db()
    succeeded = SubJob.objects.filter(job=job, status="succeeded").count()
    if job.status != "succeeded" or succeeded != size.items:
        raise harness.BenchError(f"scale: job {job.status} ({job.error}), {succeeded} of {size.items} items")
    used = JobEvent.objects.filter(job=job, type=EventType.PARTITION_CLAIMED).values("actor").distinct().count()
    return job, samples, used


def _round(running: Fleet, n: int, size: Size) -> Round:
    """Grow the fleet to n clusters and run the job on it; the tables are emptied after."""
    running.grow_to(n)
    job, samples, used = _run_job(running, size)
    running.wait_until_queue_empty()  # no drain of this job may run into the next round's (ids restart)
    first_claim = JobEvent.objects.filter(job=job, type=EventType.PARTITION_CLAIMED).order_by("id").first().created_at
    planned = JobEvent.objects.filter(job=job, type=EventType.PLANNING_FINISHED).order_by("id").first().created_at
    last_done = job.partitions.aggregate(last=Max("finished_at"))["last"]
    harness.empty_tables()
    during = [count for at, count in samples if job.created_at <= at <= job.finished_at] or [0]
    workers = n * running.workers
    full = next((at for at, count in samples if count >= workers), None)
    return Round(clusters=n, workers=workers, wall=(job.finished_at - job.created_at).total_seconds(),
                 peak=max(during), mean=sum(during) / len(during), used=used,
                 full_after=None if full is None else (full - job.created_at).total_seconds(),
                 first_claim_after=(first_claim - job.created_at).total_seconds(),
                 claim_after_planned=(first_claim - planned).total_seconds(),
                 succeeded_after_last=(job.finished_at - last_done).total_seconds())


def _report(result: harness.Result, rounds: list[Round], size: Size) -> None:
    base: harness.Figure | None = None
    for r in rounds:
        name = f"{r.clusters} cluster{'s' if r.clusters > 1 else ''}"
        ideal = result.baseline(f"ideal_s_{r.clusters}", f"{name}: ideal wall (items x work / slots)",
                                size.items * size.work_ms / 1000 / (r.workers * ITEM_CONCURRENCY), "s")
        result.figure(f"wall_s_{r.clusters}", f"{name}: wall (job start to succeeded)", r.wall, "s", vs=(ideal,))
        rate = size.items / r.wall
        if base is None:
            base = result.baseline(f"rate_{r.clusters}", f"{name}: throughput", rate, "items/s")
        else:
            result.figure(f"rate_{r.clusters}", f"{name}: throughput", rate, "items/s", vs=(base,))
        workers = result.baseline(f"workers_{r.clusters}", f"{name}: workers", r.workers, "workers")
        result.figure(f"peak_{r.clusters}", f"{name}: peak partitions in flight", r.peak, "partitions",
                      vs=(workers,))
        result.figure(f"mean_{r.clusters}", f"{name}: mean partitions in flight", r.mean, "partitions",
                      vs=(workers,))
        result.figure(f"used_{r.clusters}", f"{name}: workers that ran a partition", r.used, "workers",
                      vs=(workers,))
        if r.full_after is None:
            result.checks[f"all_workers_busy_{r.clusters}"] = "never"
        else:
            result.figure(f"full_s_{r.clusters}", f"{name}: job start to all workers busy", r.full_after, "s")
        poll = result.baseline(f"poll_s_{r.clusters}", f"{name}: broker poll interval", Conf.POLL, "s")
        result.figure(f"first_claim_s_{r.clusters}", f"{name}: job start to first partition claimed",
                      r.first_claim_after, "s", vs=(poll,))
        result.figure(f"woken_s_{r.clusters}", f"{name}: planning finished to first partition claimed",
                      r.claim_after_planned, "s", vs=(poll,))
        result.figure(f"succeeded_s_{r.clusters}", f"{name}: last partition done to job succeeded",
                      r.succeeded_after_last, "s", vs=(poll,))


def run(opts: harness.Options) -> harness.Result:
    size = Size(items=opts.pick(default=4_800, quick=160), chunk_size=QUICK_CHUNK_SIZE if opts.quick else CHUNK_SIZE,
                work_ms=QUICK_WORK_MS if opts.quick else WORK_MS)
    counts = QUICK_CLUSTER_COUNTS if opts.quick else CLUSTER_COUNTS
    result = harness.Result("scale", params={
        "clusters": list(counts), "q_workers": opts.workers, "items": size.items,
        "partitions": math.ceil(size.items / size.chunk_size), "work_ms": size.work_ms,
        "item_concurrency": ITEM_CONCURRENCY})
    rounds = []
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()), fleet(opts.workers) as f:
        for n in counts:
            opts.log(f"scale: {humanize.plural(n, 'qcluster')} x {opts.workers} workers, {size.items} items x "
                     f"{size.work_ms} ms, "
                     f"{ITEM_CONCURRENCY} in flight per worker")
            rounds.append(_round(f, n, size))
        result.checks["qclusters_started"] = len(f.clusters)
    _report(result, rounds, size)
    result.checks["items_succeeded_per_round"] = size.items
    return result
