"""Statuses, terminal sets and the one transition table per model.

Who moves what:
- Job: services (start/cancel/pause/resume/retry), the singleton plan and
  finalize steps (claiming.steps), and the circuit breaker.
- Partition: the fenced statements of claiming.leases (claim, complete) and
  lifecycle (release/fail/cancel/reap; fenced by lease token except reap),
  and services (operator retry, cancel).
- SubJob: the runner (batched, lifecycle.subjobs_finish) and services (operator retry, skip with a note).
"""

from django.db import models


class JobStatus(models.TextChoices):
    PENDING = "pending"
    PLANNING = "planning"
    RUNNING = "running"
    PAUSED = "paused"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PartitionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SubJobStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class DeliveryStatus(models.TextChoices):
    """A notification delivery's: pending until sent, or failed once it is given up (lifecycle.delivery_finish)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after PARTITIONS_NOTIFY_MAX_ATTEMPTS


JOB_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
PARTITION_TERMINAL = frozenset({PartitionStatus.SUCCEEDED, PartitionStatus.FAILED, PartitionStatus.CANCELLED})
SUBJOB_TERMINAL = frozenset({SubJobStatus.SUCCEEDED, SubJobStatus.FAILED, SubJobStatus.SKIPPED, SubJobStatus.CANCELLED})
#: Sub-jobs whose item was handled (succeeded, failed or skipped): terminal, except cancelled.
SUBJOB_HANDLED = SUBJOB_TERMINAL - {SubJobStatus.CANCELLED}
#: The items the failure ledger keeps (partitions.reads.ledger): failed, and skipped (by job code's SkipItem or by an
#: operator's skip with a note). Its index (subjob_failure_reason_idx) is partial on this set.
SUBJOB_LEDGER = frozenset({SubJobStatus.FAILED, SubJobStatus.SKIPPED})
#: The counters of a partition (and of a sample) whose sum is its items handled so far, the counterpart of
#: SUBJOB_HANDLED: the one "handled" expression, rendered for SQL by the registry (`{handled(p)}`) and for the
#: ORM by `claiming.handled_items()`.
HANDLED_COUNTERS = ("done_items", "failed_items", "skipped_items")

J, P, S = JobStatus, PartitionStatus, SubJobStatus

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    J.PENDING: frozenset({
        J.PLANNING,  # a worker takes the plan step (job_plan_claim)
        J.CANCELLED,  # an operator cancels it before it was planned
    }),
    J.PLANNING: frozenset({
        J.PLANNING,  # a re-claim of the plan step after its planner's step lease lapsed
        J.RUNNING,  # the plan is written: partitions may be claimed
        J.FAILED,  # prepare or split raised (or no plan is possible)
        J.CANCELLED,  # an operator cancels it while it is being planned
    }),
    J.RUNNING: frozenset({
        J.PAUSED,  # an operator pauses it (running partitions stop at their next batch)
        J.FINALIZING,  # every partition is terminal: a worker takes the finalize step
        J.FAILED,  # the circuit breaker: too many of its partitions failed
        J.CANCELLED,  # an operator (or job code's CancelJob) cancels it
    }),
    J.PAUSED: frozenset({
        J.RUNNING,  # an operator resumes it
        J.CANCELLED,  # an operator cancels it while paused
    }),
    J.FINALIZING: frozenset({
        J.FINALIZING,  # a re-claim of the finalize step after its finalizer's step lease lapsed
        J.SUCCEEDED,  # finalize ran and the outcome counts as success
        J.FAILED,  # finalize raised, or the outcome counts as failure
    }),
    J.SUCCEEDED: frozenset(),  # final: a re-run is a new job
    J.FAILED: frozenset({
        J.RUNNING,  # an operator retry of failed partitions or sub-jobs reopens it
        J.FINALIZING,  # an operator skipped its last failed items (no failed partition left): finalize again
    }),
    J.CANCELLED: frozenset(),  # final: a re-run is a new job
}

PARTITION_TRANSITIONS: dict[str, frozenset[str]] = {
    P.PENDING: frozenset({
        P.RUNNING,  # a worker claims it (the registry's `partition_claim`, skipping locked rows; a new lease token)
        P.CANCELLED,  # its job is cancelled or fails before anyone claimed it
    }),
    P.RUNNING: frozenset({
        P.RUNNING,  # a re-claim of a lapsed lease (expired, or its holder's backend gone): a new token
        P.PENDING,  # its holder releases it (budget spent, paused) or backs off to retry, or the reaper requeues it
        P.SUCCEEDED,  # its holder completes it (fenced by the token)
        P.FAILED,  # out of attempts: its holder gives up, or the reaper fails a lapsed last attempt
        P.CANCELLED,  # its job ended while it ran: the holder stops at its next batch
    }),
    P.SUCCEEDED: frozenset(),  # final: its items are done
    P.FAILED: frozenset({
        P.PENDING,  # an operator retry gives it its attempts again
    }),
    P.CANCELLED: frozenset(),  # final: its job ended
}

SUBJOB_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({
        S.SUCCEEDED,  # its item ran (the runner, batched)
        S.FAILED,  # its item raised or timed out, out of attempts
        S.SKIPPED,  # job code raised SkipItem
        S.CANCELLED,  # its job was cancelled before the item ran
    }),
    S.SUCCEEDED: frozenset(),  # final
    S.FAILED: frozenset({
        S.PENDING,  # an operator retry of failed sub-jobs
        S.SKIPPED,  # an operator skips the items of one failure reason, with a note
    }),
    S.SKIPPED: frozenset({
        S.PENDING,  # an operator retry of skipped sub-jobs
    }),
    S.CANCELLED: frozenset(),  # final
}


def sources(table: dict[str, frozenset[str]], target: str) -> list[str]:
    """Statuses from which `target` may be reached: the guard of a conditional write."""
    return sorted(status for status, targets in table.items() if target in targets)


def _non_terminal_round_trips(table: dict[str, frozenset[str]], status: str) -> frozenset[str]:
    """Statuses `status` goes to and comes back from without ending (running <-> paused)."""
    return frozenset(s for s in table[status] if status in table.get(s, ()) and s not in JOB_TERMINAL) - {status}


# What an operator may do to a job in each status, derived from JOB_TRANSITIONS: the services guard with these
# sets and the rules of `partitions.permissions` name them (what the admin shows, what a service refuses).
#: Cancel: every status with an edge to cancelled (before finalize).
JOB_CANCELLABLE = frozenset(sources(JOB_TRANSITIONS, J.CANCELLED))
#: Pause: every status with an edge to paused.
JOB_PAUSABLE = frozenset(sources(JOB_TRANSITIONS, J.PAUSED))
#: Resume: the holds a running job goes to and comes back from (paused).
JOB_RESUMABLE = _non_terminal_round_trips(JOB_TRANSITIONS, J.RUNNING)
#: Reopen: the terminal statuses with an edge out (failed, by an operator retry).
JOB_REOPENABLE = frozenset(s for s in JOB_TERMINAL if JOB_TRANSITIONS[s])
#: Retry failed work: while partitions may run (pausable or resumable), or by reopening the job.
JOB_RETRYABLE = JOB_PAUSABLE | JOB_RESUMABLE | JOB_REOPENABLE
#: Skip the failed items of one reason with a note: wherever they could be retried (running, paused, or a
#: failed job: a skip settles items, it runs nothing; once nothing of it is left failed, it is finalized again).
JOB_SKIPPABLE = JOB_RETRYABLE
#: Change max parallel or the deadline: the statuses before finalize, the same ones that may be cancelled.
JOB_ADJUSTABLE = JOB_CANCELLABLE
#: Change the rate limit, pause or health override: any status before the end.
JOB_THROTTLEABLE = frozenset(JobStatus) - JOB_TERMINAL
#: Watched for deadline alerts (`partitions.operations.deadline_alerts`): running, and the holds it comes back
#: from (paused).
JOB_DEADLINE_WATCHED = frozenset({J.RUNNING}) | JOB_RESUMABLE
