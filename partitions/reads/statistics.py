"""Statistics of jobs: the live figures every surface shows (`JobStats`: progress, attempts and the projection,
on the database clock), the throughput series behind the chart, and the statistics of a run and of each of its
attempts (per-step durations, items/s overall and at peak, sub-job duration percentiles, attempts and retries,
failures grouped by error class), which the job page, `jobs status --json` and finalize read (finalize keeps
them in job.stats["run"]). A handful of queries whatever the number or size of the jobs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from django.db import connection
from django.db.models import Count, Q, Sum

from partitions import conf
from partitions.core.events import COURSE_EVENTS, SETTINGS_EVENTS, EventType
from partitions.core.states import JobStatus
from partitions.engine import dispatch
from partitions.engine.claiming import live_lease_q
from partitions.engine.sql import queries
from partitions.models import Job, JobEvent, Partition
from partitions.reads.attempts import Attempt, Mark, active_seconds, attempts_of, work_seconds
from partitions.reads.progress import Progress, jobs_progress
from partitions.reads.projection import JobFacts, Projection, Sample, project

#: Seconds of JobSample history that make "current" throughput.
RATE_WINDOW_SECONDS = 300


@dataclass
class JobStats:
    """Progress of one job, its attempts and its projection (`partitions.reads.projection`), on the database clock."""

    job: Job
    progress: Progress
    now: datetime
    projection: Projection
    attempts: list[Attempt] = field(default_factory=list)
    #: Who cancelled the job (the actor of its `job_cancelled` event; "" when it was not cancelled).
    cancelled_by: str = ""

    @property
    def handled(self) -> int:
        return self.progress.handled

    @property
    def remaining_items(self) -> int:
        return max(0, self.progress.items_total - self.handled)

    @property
    def rate(self) -> float | None:
        return self.projection.items_per_second

    @property
    def elapsed_seconds(self) -> float | None:
        """The job's duration as work: its attempts, less pauses and the time it sat failed before a retry
        (from its start to its end when its events are not known)."""
        if self.attempts:
            return active_seconds(self.attempts, self.job.finished_at or self.now)
        return _span(self.job.started_at, self.job, self.now)

    @property
    def deadline_seconds_left(self) -> float | None:
        return None if self.job.deadline is None else (self.job.deadline - self.now).total_seconds()

    @property
    def retried(self) -> bool:
        """The job runs (or ran) a retry: its finalize summary is the previous attempt's until it ends again."""
        return len(self.attempts) > 1

    def throttle(self) -> dict:
        """The job's throttle as every surface shows it (the job page's line, `jobs status`); `held`: a health
        check holds it now (an episode left open on a job that has ended is not shown)."""
        job = self.job
        return {"rate_limit": job.rate_limit, "pause_ms": job.pause_ms, "ignore_health": job.ignore_health,
                "throttled_since": job.throttled_since, "throttled_reason": job.throttled_reason,
                "held": job.throttled_since is not None and not job.is_terminal}

    def figures(self) -> dict:
        """The figures every surface shows (job page, job list, progress JSON, `jobs status --json`, `/metrics`,
        the deadline warning), all from the one projection, so no two of them can disagree."""
        p = self.projection
        return {
            "percent": round(self.progress.percent, 2),
            "items_per_second": round(p.items_per_second or 0.0, 2),
            "rate_source": p.rate_source,
            "effective_items_per_second": _round(p.effective_rate, 2),
            "limited_by": p.limited_by,
            "held": p.held,
            "eta_seconds": _round(p.eta_seconds, 1),
            "eta": p.projected_finish,
            "deadline": self.job.deadline,
            "meets_deadline": p.meets_deadline,
            "verdict": p.verdict,
            "workers_needed": p.workers_needed,
            "rate_needed": _round(p.rate_needed, 3),
            "per_worker_rate": _round(p.per_worker_rate, 3),
            "fleet_workers": p.fleet_workers,
            "live_leases": 0 if self.job.is_terminal else self.progress.live_leases,
        }


def _span(began: datetime | None, job: Job, now: datetime) -> float | None:
    """Seconds from `began` to the job's end, its pause, or now: what a job without lifecycle events (made
    directly, or from before they were kept) is measured over."""
    if began is None:
        return None
    end = job.finished_at or (job.paused_at if job.status == JobStatus.PAUSED else None) or now
    return max(0.0, (end - began).total_seconds())


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _marks(ids: list[int]) -> dict[int, list[Mark]]:
    """Lifecycle and settings events of these jobs, oldest first (partial index jobevent_course_idx)."""
    marks: dict[int, list[Mark]] = defaultdict(list)
    rows = (JobEvent.objects.filter(job_id__in=ids, type__in=sorted(COURSE_EVENTS))
            .values_list("job_id", "type", "created_at", "data", "actor").order_by("job_id", "id"))
    for job_id, type_, at, data, actor in rows:
        marks[job_id].append(Mark(type_, at, data if isinstance(data, dict) else {}, actor))
    return marks


def _settings_changed_at(marks: list[Mark]) -> datetime | None:
    """The last change to how fast the job may go (a deadline-only knob change is not one)."""
    changes = [m.at for m in marks if m.type in SETTINGS_EVENTS
               and (m.type != EventType.JOB_SETTINGS_CHANGED or "max_parallel" in m.data)]
    return max(changes, default=None)


def _samples(ids: list[int], window_seconds: float) -> tuple[datetime, dict[int, list[Sample]]]:
    samples: dict[int, list[Sample]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(queries["jobs_sample_window"], {"ids": ids, "window": window_seconds})
        rows = cursor.fetchall()
    for _, job_id, at, handled, live in rows:
        if job_id is not None:
            samples[job_id].append(Sample(at, handled, live))
    return rows[0][0], samples


def jobs_stats(jobs: Sequence[Job], *, window_seconds: float = RATE_WINDOW_SECONDS) -> dict[int, JobStats]:
    """Progress, attempts and projection of many jobs with a few queries whatever their number (progress,
    lifecycle events, the samples window with the clock, and the fleet's free workers when any job runs)."""
    if not jobs:
        return {}
    ids = [job.pk for job in jobs]
    progress, marks = jobs_progress(ids), _marks(ids)
    running = [job.pk for job in jobs if job.status == JobStatus.RUNNING]
    now, samples = _samples(running, window_seconds)
    fleet = dispatch.fleet_workers() if running else None
    busy = Partition.objects.filter(live_lease_q()).count() if fleet is not None else 0
    stats = {}
    for job in jobs:
        p = progress[job.pk]
        handled = p.handled
        attempts = attempts_of(marks[job.pk], handled_now=handled)
        held = job.throttled_reason if job.throttled_since is not None and job.status == JobStatus.RUNNING else None
        facts = JobFacts(
            status=job.status, now=now, handled=handled, items_total=p.items_total, live_leases=p.live_leases,
            samples=samples[job.pk], settings_changed_at=_settings_changed_at(marks[job.pk]),
            settle_seconds=conf.get("SAMPLE_SECONDS"),
            work_seconds=(work_seconds(attempts, job.finished_at or now) if attempts
                          else _span(job.planned_at or job.started_at, job, now)),
            run_began_at=attempts[-1].process[0] if attempts and attempts[-1].process else None,
            rate_limit=job.rate_limit,
            max_parallel=job.max_parallel, fleet_workers=fleet,
            fleet_free=None if fleet is None else fleet - (busy - p.live_leases), held_reason=held,
            deadline=job.deadline, finished_at=job.finished_at)
        cancelled_by = next((m.actor for m in reversed(marks[job.pk]) if m.type == EventType.JOB_CANCELLED), "")
        stats[job.pk] = JobStats(job=job, progress=p, now=now, projection=project(facts), attempts=attempts,
                                 cancelled_by=cancelled_by)
    return stats


def job_stats(job: Job) -> JobStats:
    """Progress, attempts and projection of one job."""
    return jobs_stats([job])[job.pk]


@dataclass(frozen=True)
class ThroughputPoint:
    taken_at: datetime
    rate: float
    live_leases: int


Reading = tuple[datetime, int, int]  # (when, items handled, live leases)


def job_throughput_series(job_id: int, *, max_points: int = 120, start: Reading | None = None,
                          end: Reading | None = None) -> list[ThroughputPoint]:
    """Items/s between consecutive (thinned) JobSample rows, for the job page chart; `start` (the job's planning,
    nothing handled) and `end` (its counters now, or at its end) frame the samples, so a job that ran only a
    few seconds still has a line."""
    with connection.cursor() as cursor:
        cursor.execute(queries["job_samples_thinned"], {"job_id": job_id, "points": max_points})
        rows = cursor.fetchall()
    if start is not None and (not rows or start[0] < rows[0][0]):
        rows.insert(0, start)
    if end is not None and (not rows or end[0] > rows[-1][0]):
        rows.append(end)
    points = []
    for (t0, h0, _), (t1, h1, live) in pairwise(rows):
        seconds = (t1 - t0).total_seconds()
        if seconds > 0:
            points.append(ThroughputPoint(taken_at=t1, rate=max(0.0, (h1 - h0) / seconds), live_leases=live))
    return points


# The statistics of a run and of its attempts ------------------------------------------------------------------

STEPS = ("prepare", "process", "finalize")
FAILURE_CLASSES_SHOWN = 10


def _per_second(items: int | None, seconds: float | None) -> float | None:
    return round(items / seconds, 2) if items is not None and seconds else None


def _attempt_row(attempt: Attempt, now: datetime) -> dict:
    steps = {step: _round(attempt.step_seconds(step, now)) for step in STEPS}
    return {"attempt": attempt.label, "outcome": attempt.outcome, "steps_seconds": steps,
            "paused_seconds": _round(attempt.paused_in(now)), "items_handled": attempt.items(),
            "items_per_second": _per_second(attempt.items(), attempt.step_seconds("process", now))}


def _total(seconds: list[float | None]) -> float | None:
    """The sum over the attempts that had this step (None when none had it)."""
    known = [s for s in seconds if s is not None]
    return _round(sum(known)) if known else None


def _durations(job_id: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(queries["subjob_durations"], {"job_id": job_id})
        n, percentiles, longest, attempts, retried = cursor.fetchone()
    p50, p95, p99 = (None if p is None else round(p, 1) for p in percentiles or (None, None, None))
    return {"count": n, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": longest,
            "attempts": int(attempts), "retried": retried}


def _failures(job_id: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(queries["job_failures_by_class"], {"job_id": job_id, "limit": FAILURE_CLASSES_SHOWN})
        return [{"error_class": cls, "count": n, "example": example} for cls, n, example in cursor.fetchall()]


def job_run_statistics(job: Job, *, points: list[ThroughputPoint] | None = None,
                       stats: JobStats | None = None) -> dict:
    """The statistics of a job, as JSON-ready values (seconds, items/s, milliseconds), and of each attempt on
    its own (run 1, retry 1 …): steps are each attempt's own, paused time and time spent failed are not work.
    `points`, `stats`: the job's throughput series and stats when the caller has read them already."""
    stats = job_stats(job) if stats is None else stats
    now = job.finished_at or stats.now
    attempts = [_attempt_row(a, now) for a in stats.attempts]
    totals = {step: _total([a.step_seconds(step, now) for a in stats.attempts]) for step in STEPS}
    partitions = Partition.objects.filter(job_id=job.pk).aggregate(
        n=Count("id"), all_attempts=Sum("attempts"), retried=Count("id", filter=Q(attempts__gt=1)),
        retry_partitions=Count("id", filter=Q(kind=Partition.Kind.RETRY)))
    points = job_throughput_series(job.pk) if points is None else points
    return {
        "steps_seconds": totals,
        "items_handled": stats.handled,
        # The same figure as the job's average rate (the projection's work time).
        "items_per_second": _per_second(stats.handled, work_seconds(stats.attempts, now)),
        "attempts": attempts,
        "peak_items_per_second": round(max(p.rate for p in points), 2) if points else None,
        "peak_partitions_in_flight": max(p.live_leases for p in points) if points else None,
        "partitions": {"count": partitions["n"], "attempts": partitions["all_attempts"] or 0,
                       "retried": partitions["retried"], "retry_partitions": partitions["retry_partitions"]},
        "subjob_durations": _durations(job.pk),
        "failures_by_class": _failures(job.pk),
    }
