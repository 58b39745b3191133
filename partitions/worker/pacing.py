"""What a run does between batches to be kind to the database: the job's pause, the health gate, and the
fleet-wide rate limit (see `partitions.engine.throttling` and `partitions.engine.health`).

The run's lease stays renewed throughout (the process's renewer thread); waits are cut into short sleeps
so a pause, a cancel, a lost lease or the end of the drain's budget is noticed within a second.

The drain's budget knows how long work takes: the pacer keeps a pessimistic estimate of one unit of work (an
item, or a batch for a type that processes batches whole; it rises at once and decays by halves) and
`can_start` says no to a unit that would run past the budget, so a drain returns within its budget plus at
most one unit (what `partitions.checks` sizes the django-q2 timeout for). Under a rate limit an item is
processed only with a reservation: `admit` reserves before it lets a batch through, and refuses (the items
wait for the next drain, which waits its turn) unless the budget holds the wait and a unit after it; what it
admitted then runs (`can_run` asks only for the unit), so a reservation is not spent on work that never runs.
"""

from __future__ import annotations

import logging
import time

from partitions.core.states import JobStatus
from partitions.core.waits import seconds_left, sleep_for
from partitions.engine import health, throttling
from partitions.engine.throttling import JobControls, RateBacklog
from partitions.worker.renewer import Held

log = logging.getLogger(__name__)

#: The longest single sleep of a wait, so job controls are re-read at least this often.
WAIT_SLICE_SECONDS = 1.0


class Pacer:
    """The throttle of one run of one partition."""

    def __init__(self, job, job_type, controls: JobControls, *, worker_id: str, keeper: Held,
                 deadline: float | None, learned: dict | None = None):
        self.job, self.job_type, self.controls = job, job_type, controls
        self.worker_id, self.keeper, self.deadline = worker_id, keeper, deadline
        self.batches = 0
        #: The last reservation `admit` took, while some of its items may still be given back (`release`).
        self.reservation: throttling.Reservation | None = None
        #: Shared by the runs of one job in one drain: "unit_seconds", the estimate of one unit of work.
        self.learned = {} if learned is None else learned

    def observe(self, seconds: float) -> None:
        """One unit of work took `seconds`: the estimate rises to it at once and decays by halves."""
        last = self.learned.get("unit_seconds")
        self.learned["unit_seconds"] = seconds if last is None else max(seconds, (last + seconds) / 2)

    def can_start(self) -> bool:
        """Whether one more unit of work, admitted first, ends within the drain's budget: under a rate limit
        the budget must hold its reservation's wait (at most RATE_HORIZON_SECONDS) and then the unit, so
        what `admit` lets through still passes `can_run` and is never reserved in vain."""
        needed = self.learned.get("unit_seconds", 0.0)
        if self.controls.rate_limit:
            needed += throttling.RATE_HORIZON_SECONDS
        return self.deadline is None or seconds_left(self.deadline) > needed

    def can_run(self) -> bool:
        """Whether one more unit of work already admitted (its reservation waited for) ends within the budget."""
        return self.deadline is None or seconds_left(self.deadline) > self.learned.get("unit_seconds", 0.0)

    def gate(self) -> None:
        """Before each batch: the pause after the previous one, then wait while a health check fails.

        Returns early (leaving the caller to stop) when the job stops running, the lease is lost or the
        drain's budget is spent; the job's controls are fresh afterwards.
        """
        if self.batches and self.controls.pause_ms:
            self._sleep(self.controls.pause_ms / 1000)
        self.batches += 1
        while self.controls.status == JobStatus.RUNNING and not self.controls.ignore_health:
            verdict, checked_at = health.job_verdict(self.job, self.job_type)
            if verdict.ok:
                if self.controls.throttled:
                    throttling.throttle_end(self.job.pk, checked_at=checked_at, actor=self.worker_id)
                    self.controls = throttling.job_controls(self.job.pk)
                return
            if not self.controls.throttled:
                throttling.throttle_start(self.job.pk, verdict.reason, checked_at=checked_at, actor=self.worker_id)
            if not self._sleep(WAIT_SLICE_SECONDS):
                return
            self.controls = throttling.job_controls(self.job.pk)

    def admit(self, items: int) -> bool:
        """Before processing `items`: their reservation under the job's rate limit (if it has one), waited for.
        False when they must not be processed now: the budget ends first, the lease is lost, the job stopped."""
        while self.controls.rate_limit:
            if self.controls.status != JobStatus.RUNNING or not self.can_start():
                return False
            try:
                self.reservation = throttling.rate_reserve(self.job.pk, items)
            except RateBacklog as backlog:
                if not self._sleep(min(backlog.seconds, WAIT_SLICE_SECONDS)):
                    return False
                self.controls = throttling.job_controls(self.job.pk)
                continue
            # The reservation starts within the horizon, which can_start left room for.
            return self.reservation is None or self._sleep(self.reservation.wait)
        return not self.keeper.lost

    def release(self, items: int) -> None:
        """The last `items` admitted will not run (the budget ended before they could start): give their
        reservation back to the limiter, when no other run reserved after it."""
        if self.reservation is not None and items > 0:
            throttling.rate_release(self.job.pk, self.reservation, items)
            self.reservation = None

    def batch_cap(self, size: int) -> int:
        return self.controls.batch_cap(size)

    def _sleep(self, seconds: float) -> bool:
        """Sleep `seconds` in short slices, cut short when the lease is lost or the budget ends; True when the
        whole wait passed with the lease held."""
        seconds = max(0.0, seconds)
        whole = self.deadline is None or seconds <= seconds_left(self.deadline)
        until = time.monotonic() + min(seconds, seconds_left(self.deadline))
        while (left := until - time.monotonic()) > 0 and not self.keeper.lost:
            sleep_for(min(left, 0.1))
        return whole and not self.keeper.lost
