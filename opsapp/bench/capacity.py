"""`bench capacity`: the figures the capacity model (docs/explanation/capacity.md) predicts, measured.

- claim at scale: `worker.drain` (claim 50, W processes) over one job of N no-op partitions, first with the
  table otherwise empty (the baseline), then with F finished partitions of another job already in it: the
  claim walks only the partial index of claimable rows, so the ratio should stay ~1. The first run's events
  give the per-job event volume (rows per partition, bytes per row, from pg_total_relation_size).
- idle load: transactions/s one idle qcluster costs (pg_stat_database), for W and 2W workers: the model says
  it does not depend on W (the pusher's safety-net look, the stats heartbeat, django-q2's scheduler, tick).
- busy load: transactions/s of one qcluster of W workers running `bench.sleep_items`, over a window in the
  middle of the job, next to the model's count from the measured item rate.
"""

from __future__ import annotations

import math
import time

from django.db import connection
from django_q.conf import Conf

from opsapp.bench import claim, harness, scale, sleep_items
from partitions import conf, tasks
from partitions.models import Job, JobEvent, Partition
from partitions.operations import services

FINISHED, QUICK_FINISHED = 1_000_000, 20_000
CLAIM_BATCH = 50
#: Seconds a fresh fleet (or the server after the claim runs) is left alone before its load is measured: past
#: the start-up ticks and PostgreSQL's 10 s stats flush of idle backends (see `bench idle`).
SETTLE_SECONDS, QUICK_SETTLE_SECONDS = 12.0, 0.5
#: Seconds each load is measured over.
WINDOW_SECONDS, QUICK_WINDOW_SECONDS = 10.0, 1.0
#: Statements per partition of an items job outside its batches (model: 2 to claim, 2 to complete, 1 fetch
#: that finds the end) and per batch (1 fetch, 1 checkpoint transaction), counted in one drain's queries.
PER_PARTITION, PER_BATCH, PER_SPARE_CHECK = 5, 2, 2
#: A stats heartbeat (every PARTITIONS_CLUSTER_STATS_SECONDS, the wake-up broker's): a cache get, a COUNT(*) and
#: a set transaction.
PER_STATS_SAVE = 3
#: An idle pusher's safety-net look (every PARTITIONS_WAKEUP_SAFETY_SECONDS): the one-statement take and the
#: read of the next schedule fire.
PER_LOOK = 2
#: django-q2's scheduler in each sentinel every 30 s (its Schedule query and the tick schedule's update), and the
#: fleet's `tick` once a minute (~20 statements; here the one cluster runs it).
PER_SCHEDULER, PER_TICK = 2 / 30, 20 / 60

# F succeeded partitions of one succeeded job, written by the server in one statement.
SQL_FINISHED_JOB = """
    INSERT INTO partitions_job (type_name, params, status, priority, max_parallel, error, stats, step_owner,
                                step_token, created_at, finished_at)
    VALUES ('bench.finished', '{}', 'succeeded', 0, 0, '', '{}', '', 0, now(), now()) RETURNING id
"""
SQL_FINISHED_PARTITIONS = """
    INSERT INTO partitions_partition (job_id, seq, kind, scope, status, estimated_items, done_items, failed_items,
        skipped_items, attempts, max_attempts, lease_owner, lease_token, last_error, last_traceback, modulus,
        remainder, started_at, finished_at)
    SELECT %(job_id)s, g, 'modulo', '{}', 'succeeded', 10, 10, 0, 0, 1, 5, 'bench', 1, '', '', %(n)s, g, now(), now()
    FROM generate_series(0, %(n)s - 1) g
"""
# The database's transaction count and a job's checkpointed items, read together (one transaction of ours).
SQL_COUNTERS = """
    SELECT pg_stat_force_next_flush(),
           (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()),
           (SELECT coalesce(sum(done_items), 0) FROM partitions_partition WHERE job_id = %(job_id)s)
"""


def _stats_heartbeat() -> float:
    return PER_STATS_SAVE / conf.get("CLUSTER_STATS_SECONDS")


def _claim_run(n: int, workers: int) -> tuple[float, int, int]:
    """Partitions/s of one drained job of n no-op partitions; its event rows and the event table's bytes."""
    job, _ = harness.planned_job(claim.NoopPartitions.name, {"partitions": n})
    harness.vacuum("partitions_partition", "partitions_job", "partitions_jobevent")
    seconds, _ = harness.run_workers(workers, harness.drain_job, job.pk, CLAIM_BATCH)
    done = Partition.objects.filter(job=job, status="succeeded").count()
    if done != n:
        raise harness.BenchError(f"capacity: {done} of {n} partitions completed")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('partitions_jobevent')")
        (size,) = cursor.fetchone()
    events = JobEvent.objects.filter(job=job).count()
    return n / seconds, events, size


def _insert_finished(n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(SQL_FINISHED_JOB)
        (job_id,) = cursor.fetchone()
        cursor.execute(SQL_FINISHED_PARTITIONS, {"job_id": job_id, "n": n})
    harness.vacuum("partitions_partition", "partitions_job")


def _claims(result: harness.Result, opts: harness.Options) -> None:
    n, finished = opts.pick(default=100_000, quick=2_000), QUICK_FINISHED if opts.quick else FINISHED
    result.params.update(partitions=n, finished_partitions=finished, claim_batch=CLAIM_BATCH)
    with harness.engine_for_bench(claim.NoopPartitions):
        opts.log(f"capacity: claim {n} partitions, empty table")
        rate, events, size = _claim_run(n, opts.workers)
        empty = result.baseline("claim_empty", f"claim {CLAIM_BATCH}, {n:,} partitions, no finished rows", rate,
                                "partitions/s")
        harness.empty_tables()
        opts.log(f"capacity: {finished} finished partitions inserted, claim {n} partitions again")
        _insert_finished(finished)
        rate, _, _ = _claim_run(n, opts.workers)
        result.figure("claim_loaded", f"claim {CLAIM_BATCH}, {n:,} partitions, {finished:,} finished rows present",
                      rate, "partitions/s", vs=(empty,))
        harness.empty_tables()
    two = result.baseline("events_predicted", "events per partition, model (claimed + succeeded)", 2, "rows")
    result.figure("events_per_partition", "events per partition, measured", events / n, "rows", vs=(two,))
    result.figure("event_bytes", "bytes per event row (table + indexes + TOAST)", size / events, "bytes")
    result.figure("events_mb", f"event table for one {n:,}-partition job", size / 1e6, "MB")


def _counters(job_id: int) -> tuple[int, int, float]:
    with connection.cursor() as cursor:
        cursor.execute(SQL_COUNTERS, {"job_id": job_id})
        _, xacts, done = cursor.fetchone()
    return int(xacts), int(done), time.monotonic()


def _busy(fleet: scale.Fleet, items: int, window: float) -> tuple[float, float]:
    """(transactions/s, items/s) of the fleet over `window` seconds in the middle of a sleep_items job."""
    job, _ = services.job_start(sleep_items.SleepItems.name, {"items": items, "chunk_size": scale.CHUNK_SIZE,
                                                              "work_ms": scale.WORK_MS,
                                                              "concurrency": scale.ITEM_CONCURRENCY}, actor="bench")
    fleet.wait_for(lambda: _counters(job.pk)[1] >= items // 5, timeout=scale.JOB_TIMEOUT, what="the job to ramp up")
    x0, d0, t0 = _counters(job.pk)
    time.sleep(window)
    x1, d1, t1 = _counters(job.pk)
    if d1 >= items:
        raise harness.BenchError("capacity: the job ended inside the busy window; give it more items (--size)")
    fleet.wait_for(lambda: Job.objects.filter(pk=job.pk, status="succeeded").exists(), timeout=scale.JOB_TIMEOUT,
                   what="the job to finish")
    fleet.wait_until_queue_empty()
    return (x1 - x0 - 1) / (t1 - t0), (d1 - d0) / (t1 - t0)  # one of the transactions is our first reading


def _loads(result: harness.Result, opts: harness.Options) -> None:
    window = QUICK_WINDOW_SECONDS if opts.quick else WINDOW_SECONDS
    settle = QUICK_SETTLE_SECONDS if opts.quick else SETTLE_SECONDS
    w = opts.workers
    idle_model = result.baseline("idle_predicted", "idle qcluster, model (2 per look, 3 per stats, scheduler, tick)",
                                 PER_LOOK / conf.get("WAKEUP_SAFETY_SECONDS") + _stats_heartbeat() + PER_SCHEDULER
                                 + PER_TICK, "xact/s")
    # What the server does without any cluster (autovacuum after the claim runs, other sessions): subtracted.
    time.sleep(settle)
    background = scale.idle_transactions_per_second(window)
    result.params["background_xact_s"] = round(background, 1)
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()):
        for workers in (w, 2 * w):
            with scale.fleet(workers) as fleet:
                fleet.grow_to(1)
                time.sleep(settle)  # past the start-up ticks of every spawned worker
                opts.log(f"capacity: idle qcluster of {workers} workers, {window} s")
                # An idle cluster costs ~0.4 xact/s, inside the background's noise: a difference below 0 is 0.
                idle = max(0.0, scale.idle_transactions_per_second(window) - background)
                result.figure(f"idle_{workers}", f"idle qcluster of {workers} workers, measured (- background)",
                              idle, "xact/s", vs=(idle_model,))
                if workers != w:
                    continue
                items = opts.pick(default=4_800, quick=400)
                opts.log(f"capacity: busy qcluster of {workers} workers, {items} items x {scale.WORK_MS} ms")
                busy, rate = _busy(fleet, items, window)
                harness.empty_tables()
        batch, chunk = sleep_items.SleepItems.batch_size, scale.CHUNK_SIZE
        claims = rate / chunk
        per_worker = (rate * PER_BATCH / batch + claims * PER_PARTITION + min(claims, w / Conf.POLL) * PER_SPARE_CHECK
                      ) / w
        model = result.baseline("busy_predicted", f"busy worker, model at the measured {rate:.0f} items/s",
                                per_worker, "xact/s")
        result.figure("busy_per_worker", "busy worker, measured ((cluster - background - stats heartbeat) / W)",
                      (busy - background - _stats_heartbeat()) / w, "xact/s", vs=(model,))
        result.params.update(q_workers=w, items_per_partition=chunk, batch_size=batch, window_s=window,
                             item_concurrency=scale.ITEM_CONCURRENCY, work_ms=scale.WORK_MS,
                             partitions_per_s=round(claims, 2), batches_per_partition=math.ceil(chunk / batch))


def run(opts: harness.Options) -> harness.Result:
    result = harness.Result("capacity", params={"workers": opts.workers})
    _claims(result, opts)
    _loads(result, opts)
    return result
