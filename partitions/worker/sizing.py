"""The size of a run's next batch: fixed, or adapted to the measured time of recent batches.

An adaptive job type (`target_batch_seconds`) aims each batch at that duration: the seconds per item are
smoothed with an exponential moving average, and one adjustment moves the size by at most `STEP` either
way, so one slow (or fast) batch cannot collapse (or blow up) the size. A batch stopped by a statement or
lock timeout is retried at half the size, for every job type, down to `min_batch_size`.
"""

from __future__ import annotations

import math

from django.db import DatabaseError

#: The most one adjustment multiplies or divides the size by (a size of 1 grows to 2).
STEP = 1.5
#: Weight of the newest batch in the moving average of seconds per item.
SMOOTHING = 0.3
#: A size this many times the last one reported (or a fraction as small) is worth an event.
REPORT_FACTOR = 2.0
#: SQLSTATEs of a statement cut short by statement_timeout (query_canceled) or lock_timeout.
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def timed_out(exc: BaseException) -> bool:
    """True for a database error raised by statement_timeout or lock_timeout."""
    if not isinstance(exc, DatabaseError):
        return False
    return getattr(exc.__cause__, "sqlstate", None) in TIMEOUT_SQLSTATES


class BatchSizer:
    """One run's batch size."""

    def __init__(self, start: int, *, target_seconds: float | None, low: int, high: int):
        self.target, self.low, self.high = target_seconds, low, high
        self.size = self._bounded(start)
        self.reported = self.size
        self.seconds_per_item: float | None = None

    def observe(self, items: int, seconds: float) -> None:
        """A batch of `items` took `seconds`: move the size toward the target (adaptive types only)."""
        if self.target is None or items <= 0:
            return
        latest = max(seconds, 1e-6) / items
        average = self.seconds_per_item
        self.seconds_per_item = latest if average is None else SMOOTHING * latest + (1 - SMOOTHING) * average
        ideal = self.target / self.seconds_per_item
        largest = max(self.size + 1, math.floor(self.size * STEP))
        smallest = math.ceil(self.size / STEP)
        self.size = self._bounded(round(min(max(ideal, smallest), largest)))

    def halve(self) -> bool:
        """After a timeout: half the size for the retry and what follows; False when already at the minimum."""
        if self.size <= self.low:
            return False
        self.size = self._bounded(self.size // 2)
        return True

    def report(self) -> int | None:
        """The size, when it moved by REPORT_FACTOR or more since it was last reported (then it is)."""
        if max(self.size, self.reported) < REPORT_FACTOR * min(self.size, self.reported):
            return None
        self.reported = self.size
        return self.size

    def _bounded(self, size: int) -> int:
        return max(self.low, min(self.high, size))
