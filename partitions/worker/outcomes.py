"""The one place outcomes of partition runs become transitions: successes completed together, the rest one by one."""

from __future__ import annotations

import logging

from partitions import claiming, services
from partitions.exceptions import LeaseLost, error_line
from partitions.logs import partition_fields
from partitions.models import Partition
from partitions.states import PartitionStatus
from partitions.worker import splitting, steps
from partitions.worker.context import JobSetup, job_setup
from partitions.worker.run import Outcome

log = logging.getLogger(__name__)


def _finishes(partition: Partition, token: int, outcome: Outcome, actor: str, job_type) -> bool:
    if outcome.kind == "released":
        claiming.partition_release(partition.pk, token, actor=actor, reason=outcome.reason)
    elif outcome.kind in {"failed", "retry"}:
        delay = outcome.retry_after if outcome.retry_after is not None else job_type.backoff.delay(partition.attempts)
        status = claiming.partition_fail(partition.pk, token, actor=actor, error=outcome.reason,
                                         traceback=outcome.traceback, retry_after=delay, final=outcome.final)
        if status == PartitionStatus.PENDING and outcome.timed_out:
            splitting.halve_after_failure(partition.pk, actor=actor, why=f"timed out: {outcome.reason}"[:300])
        if status == PartitionStatus.FAILED:
            return not steps.job_trip_breaker(partition.job_id) and _none_left(partition.job_id)
    elif outcome.kind == "cancelled":
        claiming.partition_cancel(partition.pk, token, actor=actor, reason=outcome.reason)
    elif outcome.kind == "cancel_job":
        claiming.partition_cancel(partition.pk, token, actor=actor, reason=outcome.reason)
        services.job_cancel(partition.job_id, actor=actor, reason=error_line(outcome.reason))
    return False


def _none_left(job_id: int) -> bool:
    return bool(claiming.jobs_without_unfinished_partitions([job_id]))


def apply_outcomes(finished: list[tuple[Partition, Outcome]], *, worker_id: str,
                   cache: dict[int, JobSetup] | None = None) -> set[int]:
    """The one place outcomes become transitions: successes in one statement, the rest one by one.

    Returns the jobs that may now be finalized.
    """
    done = [(p, o) for p, o in finished if o.kind == "succeeded"]
    completed, jobs = claiming.partitions_complete([(p.pk, p.lease_token, o.stats) for p, o in done],
                                                   actor=worker_id)
    for partition, outcome in done:
        _log(partition, outcome)
        if partition.pk not in completed:
            _lease_lost(partition, outcome)
    for partition, outcome in finished:
        if outcome.kind != "succeeded" and apply_outcome(partition, outcome, worker_id=worker_id, cache=cache):
            jobs.add(partition.job_id)
    return jobs


def _log(partition: Partition, outcome: Outcome) -> None:
    log.info("partition %s of job %s (token %s): %s %s", partition.pk, partition.job_id, partition.lease_token,
             outcome.kind, outcome.reason, extra={**partition_fields(partition), "outcome": outcome.kind})


def _lease_lost(partition: Partition, outcome: Outcome) -> None:
    log.warning("partition %s: lease lost before recording %s", partition.pk, outcome.kind,
                extra=partition_fields(partition))


def apply_outcome(partition: Partition, outcome: Outcome, *, worker_id: str,
                  cache: dict[int, JobSetup] | None = None) -> bool:
    """One outcome as a transition; True when the job may now be finalized."""
    if outcome.kind == "succeeded":
        return partition.job_id in apply_outcomes([(partition, outcome)], worker_id=worker_id, cache=cache)
    _log(partition, outcome)
    if outcome.kind == "lease_lost":
        return False
    try:
        job_type = job_setup(partition.job_id, cache).job_type
        return _finishes(partition, partition.lease_token, outcome, worker_id, job_type)
    except LeaseLost:
        _lease_lost(partition, outcome)
        return False
