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


@dataclass
class DrainReport:
    partitions: int = 0
    outcomes: Counter = field(default_factory=Counter)
    jobs_to_finalize: set[int] = field(default_factory=set)


def drain(*, budget_seconds: float | None = None, job_id: int | None = None, worker: str | None = None,
          claim_batch: int | None = None) -> DrainReport:
    """Claim and run partitions until none is claimable or the budget is spent."""
    worker = worker or worker_id()
    budget = conf.get("DRAIN_BUDGET_SECONDS") if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    lease = conf.get("LEASE_SECONDS")
    report = DrainReport()
    setups: dict = {}  # job id -> JobSetup, for this drain only
    while time.monotonic() < deadline:
        claimed = claiming.partition_claim(worker_id=worker, lease_seconds=lease, job_id=job_id,
                                           limit=claim_batch or conf.get("CLAIM_BATCH"))
        if not claimed:
            # A lease about to expire (its holder missed renewals: renewals keep at least two
            # thirds of a lease ahead) or a backoff about to end: wait for it instead of leaving
            # the partition until the next tick. Healthy leases are never waited on.
            wait = claiming.seconds_until_claimable(job_id)
            if wait is None or wait > min(lease / 2, deadline - time.monotonic()):
                break
            time.sleep(max(0.0, wait) + 0.05)
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
    return report
