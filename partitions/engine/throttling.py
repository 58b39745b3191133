"""A job's throttle in PostgreSQL: the knobs running partitions read, the fleet-wide rate limiter, and
health-check episodes.

The rate limiter is GCRA (the generic cell rate algorithm) on the job row: `rate_tat` is the theoretical arrival
time of the next item. A worker that fetched n items reserves n / rate seconds from max(rate_tat, now) in one
conditional write (`job_rate_reserve`) and sleeps until its slot starts. Reservations are refused past
`RATE_HORIZON_SECONDS` ahead (the worker waits and asks again), so no worker sleeps on an old rate for long and
a changed limit applies within about a second. It holds with any number of workers, however skewed their speed,
because every item of the job passes the same row; the cost is one short write per batch, only for rate-limited
jobs. A share per worker (limit / live leases) would need no row, but drifts whenever leases come and go and
leaves a slow worker's share unused. Reserved items a drain's budget leaves unstarted are given back
(`rate_release`) while theirs is still the latest reservation: exactly as if it had been smaller, so the
guarantee holds and a short drain does not burn the rate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from partitions.core.events import EventType
from partitions.core.limits import SHORT_TEXT, clip
from partitions.engine.lifecycle import Actor, event
from partitions.engine.sql import queries

#: A reservation starts at most this far ahead; beyond it the worker waits and asks again.
RATE_HORIZON_SECONDS = 1.0
#: A rate-limited batch takes at most this much of the rate, so grants stay small and the rate smooth.
RATE_SLICE_SECONDS = 0.25

#: The columns a running partition learns its job's controls from (also returned by claim and checkpoint).


@dataclass(frozen=True)
class JobControls:
    """What a running partition obeys, refreshed at every checkpoint: status and throttle."""

    status: str
    rate_limit: float | None = None
    pause_ms: int = 0
    ignore_health: bool = False
    throttled: bool = False

    @classmethod
    def from_row(cls, row) -> JobControls:
        status, rate_limit, pause_ms, ignore_health, throttled = row
        return cls(status, rate_limit, pause_ms, ignore_health, throttled)

    def batch_cap(self, size: int) -> int:
        """`size`, or fewer when a rate limit makes a smaller slice smoother."""
        if not self.rate_limit:
            return size
        return max(1, min(size, int(self.rate_limit * RATE_SLICE_SECONDS)))


def job_controls(job_id: int) -> JobControls:
    with connection.cursor() as cursor:
        cursor.execute(queries["job_controls"], {"job_id": job_id})
        return JobControls.from_row(cursor.fetchone())


@dataclass(frozen=True)
class Reservation:
    """`items` reserved on a job's limiter: start after `wait` seconds (<= 0: now); they hold `seconds` of
    the rate, up to `ends_at` (the limiter's theoretical arrival time right after them)."""

    wait: float
    items: int
    ends_at: datetime
    seconds: float


def rate_reserve(job_id: int, items: int) -> Reservation | None:
    """Reserve `items` on the job's limiter, or None when the job has no limit. Raises RateBacklog (with the
    seconds to wait) past the horizon."""
    with connection.cursor() as cursor:
        cursor.execute(queries["job_rate_reserve"], {"job_id": job_id, "n": items, "horizon": RATE_HORIZON_SECONDS})
        row = cursor.fetchone()
        if row is not None:
            wait, ends_at, seconds = row
            return Reservation(wait, items, ends_at, seconds)
        cursor.execute(queries["job_rate_backlog"], {"job_id": job_id})
        limit, ahead = cursor.fetchone()
    if not limit:
        return None
    raise RateBacklog(max(0.01, (ahead or 0.0) - RATE_HORIZON_SECONDS))


def rate_release(job_id: int, reservation: Reservation, items: int) -> bool:
    """Give back the last `items` of `reservation` (they will not run) unless a later reservation was taken."""
    items = min(items, reservation.items)
    if items <= 0:
        return False
    with connection.cursor() as cursor:
        cursor.execute(queries["job_rate_release"], {"job_id": job_id, "ends_at": reservation.ends_at,
                                                     "seconds": reservation.seconds * items / reservation.items})
        return cursor.fetchone() is not None


class RateBacklog(Exception):
    """The limiter is booked further ahead than the horizon: wait `seconds` and ask again."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def throttle_start(job_id: int, reason: str, *, checked_at: datetime, actor: str) -> bool:
    """Open a health episode (one `job_throttled` event per episode, whichever worker sees it first)."""
    reason = clip(reason, SHORT_TEXT)
    with connection.cursor() as cursor:
        cursor.execute(queries["job_throttle_start"], {"job_id": job_id, "reason": reason, "checked_at": checked_at})
        started = cursor.fetchone() is not None
    if started:
        event(job_id, EventType.JOB_THROTTLED, Actor.of(actor), {"reason": reason})
    return started


def throttle_end(job_id: int, *, checked_at: datetime | None, actor: object, why: str = "health check passed") -> bool:
    """Close the open episode when `checked_at` (the verdict's database time; None: at once) is newer."""
    with connection.cursor() as cursor:
        cursor.execute(queries["job_throttle_end"], {"job_id": job_id, "checked_at": checked_at})
        row = cursor.fetchone()
    if row is None:
        return False
    seconds, reason = row
    event(job_id, EventType.JOB_THROTTLE_LIFTED, Actor.of(actor),
          {"why": why, "reason": reason, "seconds": round(seconds, 1)})
    return True
