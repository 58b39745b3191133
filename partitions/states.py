"""Statuses, terminal sets and the one transition table per model.

Who moves what:
- Job: services (start/cancel/pause/resume/retry), the singleton plan and
  finalize steps (claiming.job_step_*), and the circuit breaker.
- Partition: claiming (claim/release/complete/fail/reap; all fenced by lease
  token except claim and reap) and services (operator retry, cancel).
- SubJob: the runner (batched) and services (operator retry).
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


JOB_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
PARTITION_TERMINAL = frozenset({PartitionStatus.SUCCEEDED, PartitionStatus.FAILED, PartitionStatus.CANCELLED})
SUBJOB_TERMINAL = frozenset({SubJobStatus.SUCCEEDED, SubJobStatus.FAILED, SubJobStatus.SKIPPED, SubJobStatus.CANCELLED})

J, P, S = JobStatus, PartitionStatus, SubJobStatus

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    J.PENDING: frozenset({J.PLANNING, J.CANCELLED}),
    # planning -> failed: prepare/split raised; planning -> planning is a re-claim after lease expiry.
    J.PLANNING: frozenset({J.PLANNING, J.RUNNING, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.PAUSED, J.FINALIZING, J.FAILED, J.CANCELLED}),
    J.PAUSED: frozenset({J.RUNNING, J.CANCELLED}),
    J.FINALIZING: frozenset({J.FINALIZING, J.SUCCEEDED, J.FAILED}),
    J.SUCCEEDED: frozenset(),
    # An operator retry of failed partitions reopens a failed job.
    J.FAILED: frozenset({J.RUNNING}),
    J.CANCELLED: frozenset(),
}

PARTITION_TRANSITIONS: dict[str, frozenset[str]] = {
    P.PENDING: frozenset({P.RUNNING, P.CANCELLED}),
    # running -> running is a re-claim of an expired lease; -> pending is release or backoff.
    P.RUNNING: frozenset({P.RUNNING, P.PENDING, P.SUCCEEDED, P.FAILED, P.CANCELLED}),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset({P.PENDING}),
    P.CANCELLED: frozenset(),
}

SUBJOB_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
    S.SKIPPED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset(),
}


def sources(table: dict[str, frozenset[str]], target: str) -> list[str]:
    """Statuses from which `target` may be reached: the guard of a conditional UPDATE."""
    return sorted(status for status, targets in table.items() if target in targets)


def _non_terminal_round_trips(table: dict[str, frozenset[str]], status: str) -> frozenset[str]:
    """Statuses `status` goes to and comes back from without ending (running <-> paused)."""
    return frozenset(s for s in table[status] if status in table.get(s, ()) and s not in JOB_TERMINAL) - {status}


# What an operator may do to a job in each status, derived from JOB_TRANSITIONS: the services guard with these
# sets and the admin shows a control only in them (`partitions.admin.actions.job_controls`).
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
#: Change max parallel or the deadline: the statuses before finalize, the same ones that may be cancelled.
JOB_ADJUSTABLE = JOB_CANCELLABLE
#: Change the rate limit, pause or health override: any status before the end.
JOB_THROTTLEABLE = frozenset(JobStatus) - JOB_TERMINAL
