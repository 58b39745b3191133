"""What a run does between batches to be kind to the database: the job's pause, the health gate, and the
fleet-wide rate limit (see `partitions.throttling` and `partitions.health`).

The run's lease stays renewed throughout (the process's renewer thread); waits are cut into short sleeps
so a pause, a cancel, a lost lease or the end of the drain's budget is noticed within a second.
"""

from __future__ import annotations

import logging
import time

from partitions import health, throttling
from partitions.states import JobStatus
from partitions.throttling import JobControls, RateBacklog
from partitions.worker.renewer import Held

log = logging.getLogger(__name__)

#: The longest single sleep of a wait, so job controls are re-read at least this often.
WAIT_SLICE_SECONDS = 1.0


class Pacer:
    """The throttle of one run of one partition."""

    def __init__(self, job, job_type, controls: JobControls, *, worker_id: str, keeper: Held,
                 deadline: float | None):
        self.job, self.job_type, self.controls = job, job_type, controls
        self.worker_id, self.keeper, self.deadline = worker_id, keeper, deadline
        self.batches = 0

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

    def admit(self, items: int) -> None:
        """Before processing `items`: wait for their turn under the job's rate limit (if it has one)."""
        while self.controls.rate_limit:
            try:
                wait = throttling.rate_reserve(self.job.pk, items)
            except RateBacklog as backlog:
                if not self._sleep(min(backlog.seconds, WAIT_SLICE_SECONDS)):
                    return
                self.controls = throttling.job_controls(self.job.pk)
                continue
            if wait is not None and wait > 0:
                self._sleep(wait)
            return

    def batch_cap(self, size: int) -> int:
        return self.controls.batch_cap(size)

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, less when the lease is lost or the budget ends; False if waiting must stop."""
        until = time.monotonic() + seconds
        if self.deadline is not None:
            until = min(until, self.deadline)
        while (left := until - time.monotonic()) > 0 and not self.keeper.lost:
            time.sleep(min(left, 0.1))
        return not self.keeper.lost and (self.deadline is None or time.monotonic() < self.deadline)
