"""The projection behind every figure of a job (rate, ETA, deadline verdict, advice), as one pure function.

`project(facts)` knows every limit: the current rate is measured since the job's settings last changed (so it
never mixes a rate from before a throttle with one after); the rate the projection uses is the smallest of that,
the rate limit and what the free workers allow, and zero while paused or held by a health check; it names what
limits the job and gives only advice that can work. A finished job's verdict comes from its outcome. The job
page, the job list, the progress JSON, `jobs status`, `/metrics` and the deadline warning all read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from partitions.core.states import JOB_TERMINAL, JobStatus

#: A rate needs at least this many seconds of samples since the change; before that the job is "measuring".
MIN_SPAN_SECONDS = 1.0
#: Measured at or above this share of its rate limit, the limit is what binds.
BINDING_SHARE = 0.9

# What limits a job (`limited_by`), and how every surface names it.
RATE_LIMIT, MAX_PARALLEL, WORKERS, HEALTH, PAUSED = "rate_limit", "max_parallel", "workers", "health", "paused"
LIMIT_WORDS = {RATE_LIMIT: "limited by the rate limit", MAX_PARALLEL: "limited by max parallel",
               WORKERS: "limited by the fleet's workers", HEALTH: "held by a health check", PAUSED: "paused"}


@dataclass(frozen=True)
class Sample:
    """A throughput sample: when, items handled so far, partitions in flight."""

    at: datetime
    handled: int
    live: int


@dataclass(frozen=True)
class JobFacts:
    """What the projection reads: a job's status, counters, samples and limits, all on the database clock."""

    status: str
    now: datetime
    handled: int
    items_total: int
    live_leases: int = 0
    #: Samples of the rate window, oldest first.
    samples: Sequence[Sample] = ()
    #: When the job's settings last changed (None: never, or not known).
    settings_changed_at: datetime | None = None
    #: Seconds after a change during which batches begun under the old settings still commit (one sample
    #: interval): the rate is measured from the first sample taken after them.
    settle_seconds: float = 2.0
    #: Seconds the job spent processing, pauses and time spent failed excluded (for the average).
    work_seconds: float | None = None
    #: When its current attempt began processing: a change at or before it leaves the average unmixed.
    run_began_at: datetime | None = None
    rate_limit: float | None = None
    #: Partitions in flight at once; 0 = unlimited.
    max_parallel: int = 0
    #: Worker processes of the fleet, and how many of them this job could use now (None: unknown).
    fleet_workers: int | None = None
    fleet_free: int | None = None
    #: The reason a health check holds the job now (None: not held).
    held_reason: str | None = None
    deadline: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Projection:
    """Every figure of a job; `rate_source` says how `items_per_second` was measured: `samples` (since the last
    change, inside the window), `average` (over the work time), `measuring` (changed too recently), or ""."""

    items_per_second: float | None = None
    rate_source: str = ""
    effective_rate: float | None = None
    per_worker_rate: float | None = None
    limited_by: str | None = None
    held: str | None = None
    eta_seconds: float | None = None
    projected_finish: datetime | None = None
    meets_deadline: bool | None = None
    #: "on time", "late", "met", "missed", "not met", or None without a deadline or a projection.
    verdict: str | None = None
    late_seconds: float | None = None
    workers_needed: int | None = None
    rate_needed: float | None = None
    fleet_workers: int | None = None


def current_rate(facts: JobFacts) -> tuple[float | None, float | None, str]:
    """(items/s, partitions in flight on average, source): from the first sample taken once the last change of
    the job's settings has settled to the counters now; the work-time average when no sample was taken and
    nothing changed since the job's run began; `measuring` when the change is too recent. So under a new rate
    limit the rate shown is never above it once one sample interval has passed."""
    since = facts.settings_changed_at
    settled = None if since is None else since + timedelta(seconds=facts.settle_seconds)
    points = [s for s in facts.samples if settled is None or s.at >= settled]
    if points and (span := (facts.now - points[0].at).total_seconds()) >= MIN_SPAN_SECONDS:
        live = [s.live for s in points]
        return max(0.0, (facts.handled - points[0].handled) / span), sum(live) / len(live), "samples"
    unmixed = since is None or (facts.run_began_at is not None and since <= facts.run_began_at)
    if not facts.samples and unmixed and facts.work_seconds and facts.handled:
        return facts.handled / facts.work_seconds, float(facts.live_leases), "average"
    return None, None, "measuring"


def _capacity(facts: JobFacts) -> float:
    """Partitions this job may have in flight: its max parallel, and the free workers when the fleet is known."""
    usable = float(facts.max_parallel or math.inf)
    return usable if facts.fleet_free is None else min(usable, max(0, facts.fleet_free))


def _limited_by(facts: JobFacts, rate: float | None, in_flight: float) -> str | None:
    if facts.rate_limit and rate is not None and rate >= BINDING_SHARE * facts.rate_limit:
        return RATE_LIMIT
    capacity = _capacity(facts)
    if capacity == math.inf or in_flight < capacity:
        return None
    cap = facts.max_parallel or math.inf
    return WORKERS if facts.fleet_free is not None and facts.fleet_free < cap else MAX_PARALLEL


def _finished(facts: JobFacts) -> Projection:
    rate = facts.handled / facts.work_seconds if facts.work_seconds and facts.handled else None
    base = {"items_per_second": rate, "rate_source": "average" if rate is not None else "",
            "fleet_workers": facts.fleet_workers}
    if facts.deadline is None:
        return Projection(**base)
    if facts.status != JobStatus.SUCCEEDED:  # cancelled or failed work never met a deadline
        return Projection(**base, meets_deadline=False, verdict="not met")
    late = (facts.finished_at - facts.deadline).total_seconds() if facts.finished_at else None
    met = late is not None and late <= 0
    return Projection(**base, meets_deadline=met, verdict="met" if met else "missed",
                      late_seconds=None if late is None else max(0.0, late))


def project(facts: JobFacts) -> Projection:
    """The projection of one job (see the module docstring for the rules)."""
    if facts.status in JOB_TERMINAL:
        return _finished(facts)
    if facts.status != JobStatus.RUNNING:
        paused = facts.status == JobStatus.PAUSED
        return Projection(items_per_second=0.0 if paused else None, effective_rate=0.0 if paused else None,
                          limited_by=PAUSED if paused else None, fleet_workers=facts.fleet_workers)
    rate, in_flight, source = current_rate(facts)
    in_flight = max(in_flight or 0.0, float(facts.live_leases))
    per_worker = rate / in_flight if rate and in_flight else None
    remaining = max(0, facts.items_total - facts.handled)
    left = None if facts.deadline is None else (facts.deadline - facts.now).total_seconds()
    common = {"items_per_second": rate, "rate_source": source, "per_worker_rate": per_worker,
              "fleet_workers": facts.fleet_workers}
    if facts.held_reason is not None:
        return Projection(**common, effective_rate=0.0, limited_by=HEALTH, held=facts.held_reason,
                          meets_deadline=False if left is not None and left <= 0 and remaining else None)

    bounds = [r for r in (rate, facts.rate_limit) if r is not None]
    if per_worker is not None and (capacity := _capacity(facts)) != math.inf:
        bounds.append(per_worker * capacity)
    effective = min(bounds) if rate is not None else None
    limited_by = _limited_by(facts, rate, in_flight)
    eta = 0.0 if not remaining else (remaining / effective if effective else None)
    finish = None if eta is None else facts.now + timedelta(seconds=eta)

    meets = verdict = late = None
    if facts.deadline is not None and finish is not None:
        late = (finish - facts.deadline).total_seconds()
        meets, verdict = late <= 0, "on time" if late <= 0 else "late"
    elif left is not None and left <= 0 and remaining:
        meets, verdict = False, "late"

    workers_needed = rate_needed = None
    if left is not None and left > 0 and remaining:
        if limited_by in (MAX_PARALLEL, WORKERS) and per_worker:
            workers_needed = max(1, math.ceil(remaining / (per_worker * left)))
        elif limited_by == RATE_LIMIT:
            rate_needed = remaining / left
    return Projection(**common, effective_rate=effective, limited_by=limited_by, eta_seconds=eta,
                      projected_finish=finish, meets_deadline=meets, verdict=verdict,
                      late_seconds=None if late is None else max(0.0, late), workers_needed=workers_needed,
                      rate_needed=rate_needed)
