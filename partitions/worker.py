"""The drain loop: claim partitions and run them until the time budget is spent (no django-q2 here)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from partitions import claiming, conf, dispatch
from partitions.runner import apply_outcome, run_partition

_PROCESS_TAG = uuid.uuid4().hex[:6]


def worker_id() -> str:
    """`host:pid:tag`, unique per process, readable in the admin's lease column."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS_TAG}"


#: A standby drain looks for lapsed leases this often (one query per look, for the whole fleet).
STANDBY_POLL_SECONDS = 1.0
#: How long one drain task stands by before it hands its worker back (re-enqueued, behind queued tasks).
STANDBY_SECONDS = 10.0


@dataclass
class DrainReport:
    partitions: int = 0
    outcomes: Counter = field(default_factory=Counter)
    jobs_to_finalize: set[int] = field(default_factory=set)
    #: Stood by until the end with leases still held elsewhere: another drain should take over the watch.
    watch_goes_on: bool = False


def drain(*, budget_seconds: float | None = None, job_id: int | None = None, worker: str | None = None,
          claim_batch: int | None = None, standby: bool = True) -> DrainReport:
    """Claim and run partitions until none is claimable or the budget is spent.

    With nothing to claim while leases are held elsewhere, one drain in the fleet stands by (unless
    `standby` is off) and claims a partition as soon as its holder's backend goes away (a dead worker) or
    its lease or backoff ends.
    """
    worker = worker or worker_id()
    budget = conf.get("DRAIN_BUDGET_SECONDS") if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    lease = conf.get("LEASE_SECONDS")
    report = DrainReport()
    setups: dict = {}  # job id -> JobSetup, for this drain only
    standby_until: float | None = None
    try:
        while time.monotonic() < deadline:
            claimed = claiming.partition_claim(worker_id=worker, lease_seconds=lease, job_id=job_id,
                                               limit=claim_batch or conf.get("CLAIM_BATCH"))
            if not claimed:
                # A lease about to expire (its holder missed renewals: renewals keep at least two thirds of a
                # lease ahead) or a backoff about to end: wait for it instead of leaving the partition until the
                # next tick. A healthy lease is only watched by the standby, for its holder's death.
                wait = claiming.seconds_until_claimable(job_id)
                left = deadline - time.monotonic()
                if wait is not None and wait <= min(lease / 2, left):
                    time.sleep(max(0.0, wait) + 0.05)
                    continue
                if wait is None or not standby or not conf.get("DETECT_DEAD_BACKENDS"):
                    break
                if standby_until is None:
                    if not claiming.standby_acquire():
                        break
                    standby_until = time.monotonic() + STANDBY_SECONDS
                if time.monotonic() >= standby_until:
                    report.watch_goes_on = True
                    break
                time.sleep(min(STANDBY_POLL_SECONDS, left))
                continue
            dispatch.work_claimed()
            for partition in claimed:
                if time.monotonic() >= deadline:
                    claiming.partition_release(partition.pk, partition.lease_token, actor=worker,
                                               reason="drain budget spent before start")
                    continue
                outcome = run_partition(partition, worker_id=worker, deadline=deadline, cache=setups)
                report.partitions += 1
                report.outcomes[outcome.kind] += 1
                if apply_outcome(partition, outcome, worker_id=worker, cache=setups):
                    report.jobs_to_finalize.add(partition.job_id)
                    dispatch.job_drained(partition.job_id)
    finally:
        if standby_until is not None:
            claiming.standby_release()
    return report
