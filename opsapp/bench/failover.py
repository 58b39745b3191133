"""`bench failover`: kill -9 the worker process holding a partition mid-run; how long until another worker
resumes it (baseline: the lease length, the wait the time-based lease promises), and how many rows were redone
(must be 0: each batch's UPDATE commits with its checkpoint, so the killed batch rolls back whole).

Two rounds: the short `--lease`, and the configured lease (PARTITIONS_LEASE_SECONDS, 60 s by default), which
shows whether a dead holder is noticed before its lease runs out. `--quick` skips the second round.
"""

from __future__ import annotations

import os
import signal
import time

from django.conf import settings
from django.db import connection
from django.db.models import F

from opsapp.bench import harness
from opsapp.billing.models import Subscription
from opsapp.billing.seeding import seed_demo
from partitions import conf
from partitions.core.events import EventType
from partitions.core.states import PARTITION_TERMINAL
from partitions.jobtypes.base import JobType
from partitions.jobtypes.splits import KeyRange
from partitions.models import JobEvent, Partition

BATCH_SLEEP_SECONDS = 0.02
#: Share of the rows checkpointed before the holder is killed.
KILL_AFTER = 0.25
#: Seconds past the lease the survivor may take to resume and finish before the round is declared hung.
RESUME_MARGIN_SECONDS = 30.0


class SlowBump(JobType):
    """One partition over every subscription; each batch adds 1 to product_version, then lingers a little."""

    name = "bench.slow_bump"
    batch_size = 100

    def split(self, job, params):
        return KeyRange(Subscription.objects.all(), ("created_at", "id"), partitions=1)

    def process_batch(self, ctx, items):
        Subscription.objects.filter(pk__in=[s.pk for s in items]).update(product_version=F("product_version") + 1)
        time.sleep(BATCH_SLEEP_SECONDS)


def _holder(job_id: int, lease: float) -> int:
    settings.PARTITIONS_LEASE_SECONDS = lease  # this process only
    return harness.drain_job(job_id)


def _survivor(job_id: int, lease: float) -> int:
    """Keep draining (as drain tasks would be re-enqueued) until the job's partition is finished."""
    settings.PARTITIONS_LEASE_SECONDS = lease
    ran = 0
    while Partition.objects.filter(job_id=job_id).exclude(status__in=sorted(PARTITION_TERMINAL)).exists():
        ran += harness.drain_job(job_id)
        time.sleep(0.05)
    return ran


def _db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def _kill_holder_midway(job_id: int, partition_id: int, rows: int, lease: float) -> tuple:
    """kill -9 the process holding the partition once it checkpointed KILL_AFTER of the rows, and let
    another process drain; the kill's database time, the rows checkpointed by then, the survivor's pid."""
    holder, _ = harness.start_process(_holder, job_id, lease)
    try:
        holding = Partition.objects.filter(pk=partition_id, status="running", done_items__gte=rows * KILL_AFTER,
                                           lease_owner__contains=f":{holder.pid}:")
        harness.wait_for(holding.exists, timeout=60, what="the holder to checkpoint")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
    finally:
        if holder.is_alive():
            holder.kill()
    killed_at = _db_now()
    checkpointed = Partition.objects.get(pk=partition_id).done_items
    # Started after the kill (so the kill can never come too late), long before the lease runs out.
    survivor, survivor_result = harness.start_process(_survivor, job_id, lease)
    try:
        harness.result_of(survivor, survivor_result, timeout=lease + RESUME_MARGIN_SECONDS)
    except harness.BenchError as exc:
        raise harness.BenchError(f"failover: the partition was not resumed and finished within the {lease:g} s "
                                 f"lease + {RESUME_MARGIN_SECONDS:g} s after the kill ({exc})") from exc
    finally:
        survivor.join(10)
    return killed_at, checkpointed, survivor.pid


def _round(rows: int, lease: float) -> tuple[float, dict[str, int]]:
    """Seed, kill the holder midway and let a survivor resume; seconds from kill to resumed, and the checks."""
    seed_demo(products=1, subscriptions=rows, customers=1, events=0)
    try:
        with harness.engine_for_bench(SlowBump):
            job, _ = harness.planned_job(SlowBump.name)
            partition = Partition.objects.get(job=job)
            killed_at, checkpointed, survivor_pid = _kill_holder_midway(job.pk, partition.pk, rows, lease)
        resumed = JobEvent.objects.filter(partition=partition, type=EventType.PARTITION_CLAIMED,
                                          actor__contains=f":{survivor_pid}:").order_by("id").first()
        if resumed is None:
            raise harness.BenchError("failover: the survivor never claimed the partition")
        partition.refresh_from_db()
        redone = Subscription.objects.filter(product_version__gt=2).count()
        missed = Subscription.objects.filter(product_version__lt=2).count()
    finally:
        harness.empty_tables()  # the next round seeds afresh
    if partition.status != "succeeded" or partition.done_items != rows or redone or missed:
        raise harness.BenchError(f"failover: partition {partition.status}, done_items {partition.done_items} of "
                                 f"{rows}, {redone} rows updated twice, {missed} never (lease {lease:g} s)")
    checks = {"rows_redone": redone, "rows_missed": missed, "done_items": partition.done_items,
              "rows_at_kill": checkpointed, "attempts": partition.attempts}
    return (resumed.created_at - killed_at).total_seconds(), checks


def run(opts: harness.Options) -> harness.Result:
    rows, lease, configured = opts.pick(default=5_000, quick=2_000), opts.lease, conf.get("LEASE_SECONDS")
    result = harness.Result("failover", params={"rows": rows, "lease_s": lease, "configured_lease_s": configured,
                                                "batch_size": SlowBump.batch_size})
    opts.log(f"failover: {rows} rows in one partition; kill -9 its holder after {KILL_AFTER:.0%}, lease {lease} s")
    resume, checks = _round(rows, lease)
    lease_figure = result.baseline("lease_s", "lease", lease, "s")
    result.figure("resume_s", "kill -9 to resumed by another worker", resume, "s", vs=(lease_figure,))
    result.checks.update(checks)
    if opts.quick or configured == lease:
        result.checks["configured_lease_round"] = "skipped (--quick)" if opts.quick else "same lease"
        return result
    opts.log(f"failover: again with the configured lease, {configured:g} s (at most {configured:g} s"
             f" + {RESUME_MARGIN_SECONDS:g} s)")
    resume, checks = _round(rows, configured)
    configured_figure = result.baseline("configured_lease_s", "configured lease (PARTITIONS_LEASE_SECONDS)",
                                        configured, "s")
    result.figure("configured_resume_s", "kill -9 to resumed, configured lease", resume, "s",
                  vs=(configured_figure,))
    result.checks.update({f"configured_lease_{k}": v for k, v in checks.items()})
    return result
