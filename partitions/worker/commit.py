"""Commits finished runs: the one table from an outcome's kind to its transition (`HANDLERS`), applied in one
pass. Successes of one batch complete in one statement; every other outcome goes through its handler, one by
one, fenced by the lease token its run was claimed with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from partitions.core.exceptions import LeaseLost, error_line
from partitions.core.limits import SHORT_TEXT, clip
from partitions.core.logs import partition_fields
from partitions.core.states import PartitionStatus
from partitions.engine import claiming
from partitions.models import Partition
from partitions.worker import splitting, steps
from partitions.worker.context import JobSetup, job_setup
from partitions.worker.outcomes import Outcome, OutcomeKind

#: Each run's outcome line keeps the logger name it has always had: log queries and the docs filter on it.
log = logging.getLogger("partitions.worker.outcomes")


@dataclass(frozen=True)
class _Finished:
    """One finished run as its handler sees it."""

    partition: Partition
    outcome: Outcome
    worker_id: str
    cache: dict[int, JobSetup] | None


def _release(run: _Finished) -> bool:
    claiming.partition_release(run.partition.pk, run.partition.lease_token, actor=run.worker_id,
                               reason=run.outcome.reason)
    return False


def _fail(run: _Finished) -> bool:
    """Back to pending after its backoff (halved first when it timed out), or failed when out of attempts;
    a final failure may trip the job's circuit breaker or leave the job with nothing unfinished."""
    partition, outcome = run.partition, run.outcome
    delay = outcome.retry_after
    if delay is None:
        delay = job_setup(partition.job_id, run.cache).job_type.backoff.delay(partition.attempts)
    status = claiming.partition_fail(partition.pk, partition.lease_token, actor=run.worker_id, error=outcome.reason,
                                     traceback=outcome.traceback, retry_after=delay, final=outcome.final)
    if status == PartitionStatus.PENDING and outcome.timed_out:
        splitting.halve_after_failure(partition.pk, actor=run.worker_id,
                                      why=clip(f"timed out: {outcome.reason}", SHORT_TEXT))
    if status == PartitionStatus.FAILED:
        return not steps.job_trip_breaker(partition.job_id) and _none_left(partition.job_id)
    return False


def _cancel(run: _Finished) -> bool:
    claiming.partition_cancel(run.partition.pk, run.partition.lease_token, actor=run.worker_id,
                              reason=run.outcome.reason)
    return False


def _cancel_job(run: _Finished) -> bool:
    _cancel(run)
    steps.job_cancel(run.partition.job_id, actor=run.worker_id, reason=error_line(run.outcome.reason))
    return False


def _nothing(run: _Finished) -> bool:
    return False


#: Every outcome but success, and its transition; True when the job may now be finalized. (Successes are
#: completed together, in one statement, by `apply_outcomes`.)
HANDLERS: dict[OutcomeKind, Callable[[_Finished], bool]] = {
    OutcomeKind.RELEASED: _release,
    OutcomeKind.RETRY: _fail,
    OutcomeKind.FAILED: _fail,
    OutcomeKind.CANCELLED: _cancel,
    OutcomeKind.CANCEL_JOB: _cancel_job,
    OutcomeKind.LEASE_LOST: _nothing,
}


def _none_left(job_id: int) -> bool:
    return bool(claiming.jobs_without_unfinished_partitions([job_id]))


def apply_outcomes(finished: list[tuple[Partition, Outcome]], *, worker_id: str,
                   cache: dict[int, JobSetup] | None = None) -> set[int]:
    """Record every finished run: successes in one statement, the rest through `HANDLERS`, one by one.

    Returns the jobs that may now be finalized.
    """
    done = [(p, o) for p, o in finished if o.kind == OutcomeKind.SUCCEEDED]
    completed, jobs = claiming.partitions_complete([(p.pk, p.lease_token, o.stats) for p, o in done],
                                                   actor=worker_id)
    for partition, outcome in finished:
        _log(partition, outcome)
        if outcome.kind == OutcomeKind.SUCCEEDED:
            if partition.pk not in completed:
                _lease_lost(partition, outcome)
            continue
        try:
            if HANDLERS[outcome.kind](_Finished(partition, outcome, worker_id, cache)):
                jobs.add(partition.job_id)
        except LeaseLost:
            _lease_lost(partition, outcome)
    return jobs


def _log(partition: Partition, outcome: Outcome) -> None:
    log.info("partition %s of job %s (token %s): %s %s", partition.pk, partition.job_id, partition.lease_token,
             outcome.kind, outcome.reason, extra={**partition_fields(partition), "outcome": outcome.kind.value})


def _lease_lost(partition: Partition, outcome: Outcome) -> None:
    log.warning("partition %s: lease lost before recording %s", partition.pk, outcome.kind,
                extra=partition_fields(partition))


def apply_outcome(partition: Partition, outcome: Outcome, *, worker_id: str,
                  cache: dict[int, JobSetup] | None = None) -> bool:
    """One finished run, recorded; True when its job may now be finalized."""
    return partition.job_id in apply_outcomes([(partition, outcome)], worker_id=worker_id, cache=cache)
