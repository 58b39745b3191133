"""A job's throttle in PostgreSQL: the knobs running partitions read, the fleet-wide rate limiter, and
health-check episodes.

The rate limiter is GCRA (the generic cell rate algorithm) on the job row: `rate_tat` is the theoretical
arrival time of the next item. A worker that fetched n items reserves n / rate seconds from
max(rate_tat, now) in one conditional UPDATE and sleeps until its slot starts. Reservations are refused past
`RATE_HORIZON_SECONDS` ahead (the worker waits and asks again), so no worker sleeps on an old rate for
long and a changed limit applies within about a second. It holds with any number of workers, however
skewed their speed, because every item of the job passes the same row; the cost is one short UPDATE per
batch, only for rate-limited jobs. A share per worker (limit / live leases) would need no row, but drifts
whenever leases come and go and leaves a slow worker's share unused. Reserved items a drain's budget leaves
unstarted are given back (`rate_release`) while theirs is still the latest reservation: exactly as if it
had been smaller, so the guarantee holds and a short drain does not burn the rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from partitions.lifecycle import Actor, event

#: A reservation starts at most this far ahead; beyond it the worker waits and asks again.
RATE_HORIZON_SECONDS = 1.0
#: A rate-limited batch takes at most this much of the rate, so grants stay small and the rate smooth.
RATE_SLICE_SECONDS = 0.25

#: The columns a running partition learns its job's controls from (also returned by claim and checkpoint).
CONTROL_COLUMNS = "status, rate_limit, pause_ms, ignore_health, throttled_since IS NOT NULL"


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


SQL_JOB_CONTROLS = f"SELECT {CONTROL_COLUMNS} FROM partitions_job WHERE id = %(job_id)s"

# Reserve n items' time on the job's limiter; fenced by the horizon. Returns the seconds until the
# reservation starts (<= 0: now). Re-evaluated on the latest row version when two workers race.
SQL_RATE_RESERVE = """
    UPDATE partitions_job j
    SET rate_tat = greatest(j.rate_tat, statement_timestamp()) + make_interval(secs => %(n)s / j.rate_limit)
    WHERE j.id = %(job_id)s AND j.rate_limit > 0
      AND coalesce(j.rate_tat, '-infinity') <= statement_timestamp() + make_interval(secs => %(horizon)s)
    RETURNING EXTRACT(EPOCH FROM j.rate_tat - statement_timestamp())::float8 - %(n)s / j.rate_limit,
              j.rate_tat, %(n)s / j.rate_limit
"""

# Give back the time of reserved items that will not run, only while no later reservation was taken: as if the
# reservation had been that much smaller, so the limiter's guarantee is unchanged.
SQL_RATE_RELEASE = """
    UPDATE partitions_job SET rate_tat = rate_tat - make_interval(secs => %(seconds)s)
    WHERE id = %(job_id)s AND rate_tat = %(ends_at)s
    RETURNING id
"""

SQL_RATE_BACKLOG = """
    SELECT j.rate_limit, EXTRACT(EPOCH FROM j.rate_tat - statement_timestamp())::float8
    FROM partitions_job j WHERE j.id = %(job_id)s
"""

# A health episode starts once: only when none is open and the verdict is newer than the last change.
SQL_THROTTLE_START = """
    UPDATE partitions_job SET throttled_since = statement_timestamp(), throttled_reason = %(reason)s,
                              throttle_changed_at = statement_timestamp()
    WHERE id = %(job_id)s AND status = 'running' AND throttled_since IS NULL AND NOT ignore_health
      AND (throttle_changed_at IS NULL OR throttle_changed_at < %(checked_at)s)
    RETURNING id
"""

SQL_THROTTLE_END = """
    WITH ended AS (SELECT id, throttled_since, throttled_reason FROM partitions_job
                   WHERE id = %(job_id)s AND throttled_since IS NOT NULL
                     AND (throttled_since < %(checked_at)s OR %(checked_at)s IS NULL)
                   FOR UPDATE)
    UPDATE partitions_job j
    SET throttled_since = NULL, throttled_reason = '', throttle_changed_at = statement_timestamp()
    FROM ended WHERE j.id = ended.id
    RETURNING EXTRACT(EPOCH FROM statement_timestamp() - ended.throttled_since)::float8, ended.throttled_reason
"""


def job_controls(job_id: int) -> JobControls:
    with connection.cursor() as cursor:
        cursor.execute(SQL_JOB_CONTROLS, {"job_id": job_id})
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
        cursor.execute(SQL_RATE_RESERVE, {"job_id": job_id, "n": items, "horizon": RATE_HORIZON_SECONDS})
        row = cursor.fetchone()
        if row is not None:
            wait, ends_at, seconds = row
            return Reservation(wait, items, ends_at, seconds)
        cursor.execute(SQL_RATE_BACKLOG, {"job_id": job_id})
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
        cursor.execute(SQL_RATE_RELEASE, {"job_id": job_id, "ends_at": reservation.ends_at,
                                          "seconds": reservation.seconds * items / reservation.items})
        return cursor.fetchone() is not None


class RateBacklog(Exception):
    """The limiter is booked further ahead than the horizon: wait `seconds` and ask again."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def throttle_start(job_id: int, reason: str, *, checked_at: datetime, actor: str) -> bool:
    """Open a health episode (one `job_throttled` event per episode, whichever worker sees it first)."""
    reason = reason[:300]
    with connection.cursor() as cursor:
        cursor.execute(SQL_THROTTLE_START, {"job_id": job_id, "reason": reason, "checked_at": checked_at})
        started = cursor.fetchone() is not None
    if started:
        event(job_id, "job_throttled", Actor.of(actor), {"reason": reason})
    return started


def throttle_end(job_id: int, *, checked_at: datetime | None, actor: object, why: str = "health check passed") -> bool:
    """Close the open episode when `checked_at` (the verdict's database time; None: at once) is newer."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_THROTTLE_END, {"job_id": job_id, "checked_at": checked_at})
        row = cursor.fetchone()
    if row is None:
        return False
    seconds, reason = row
    event(job_id, "job_throttle_lifted", Actor.of(actor), {"why": why, "reason": reason, "seconds": round(seconds, 1)})
    return True
