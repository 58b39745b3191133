"""How one run of a partition ended: an `Outcome`, made by one constructor per kind (`Outcome.succeeded(…)`,
`Outcome.released(…)`, `Outcome.retry(…)`, …). `worker/commit.py` records each kind as its transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class OutcomeKind(StrEnum):
    """How one run of a partition ended (`Outcome.kind`)."""

    SUCCEEDED = "succeeded"  # every item handled: the partition completes
    RELEASED = "released"  # handed back unfinished (budget spent, job paused, max_parallel lowered)
    RETRY = "retry"  # the job type asked for a retry later (`Retry(after=…)`)
    FAILED = "failed"  # an error: retried with backoff while attempts are left, else failed for good
    CANCELLED = "cancelled"  # the job was cancelled or ended meanwhile
    CANCEL_JOB = "cancel_job"  # the job type asked to cancel the whole job (`CancelJob`)
    LEASE_LOST = "lease_lost"  # another worker holds the partition now: nothing to record


@dataclass(frozen=True)
class Outcome:
    """How a run ended; made by its kind's constructor (`apply_outcomes` in `worker/commit.py` records it)."""

    kind: OutcomeKind
    reason: str = ""
    traceback: str = ""
    retry_after: float | None = None
    final: bool = False
    #: The run's item counters (done, failed, skipped, batches): the run's own dict, complete once the run ends.
    stats: dict[str, int] = field(default_factory=dict)
    #: Failed by a statement or lock timeout even at the smallest batch: the partition is halved for its retry.
    timed_out: bool = False

    @classmethod
    def succeeded(cls, stats: dict[str, int]) -> Outcome:
        """Every item handled: the partition completes."""
        return cls(OutcomeKind.SUCCEEDED, stats=stats)

    @classmethod
    def released(cls, reason: str, stats: dict[str, int]) -> Outcome:
        """Handed back unfinished, to be claimed again (budget spent, job paused, max_parallel lowered)."""
        return cls(OutcomeKind.RELEASED, reason, stats=stats)

    @classmethod
    def retry(cls, reason: str, *, after: float | None) -> Outcome:
        """The job type asked for a retry `after` seconds (None: the type's backoff)."""
        return cls(OutcomeKind.RETRY, reason, retry_after=after)

    @classmethod
    def failed(cls, reason: str, *, traceback: str = "", final: bool = False, timed_out: bool = False,
               stats: dict[str, int] | None = None) -> Outcome:
        """An error: retried with backoff while attempts are left (none when `final`), else failed for good."""
        return cls(OutcomeKind.FAILED, reason, traceback=traceback, final=final, timed_out=timed_out,
                   stats={} if stats is None else stats)

    @classmethod
    def cancelled(cls, reason: str, stats: dict[str, int]) -> Outcome:
        """The job was cancelled or ended meanwhile: the partition is cancelled."""
        return cls(OutcomeKind.CANCELLED, reason, stats=stats)

    @classmethod
    def cancel_job(cls, reason: str) -> Outcome:
        """The job type asked to cancel the whole job (`CancelJob`)."""
        return cls(OutcomeKind.CANCEL_JOB, reason)

    @classmethod
    def lease_lost(cls) -> Outcome:
        """Another worker holds the partition now: nothing to record."""
        return cls(OutcomeKind.LEASE_LOST, "another worker holds the lease")
