"""Reads for the admin, the CLI and finalize: progress is aggregated from partitions, never a hot counter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from django.db import connection
from django.db.models import Case, Count, F, Max, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce, Greatest, Now

from partitions import conf, dispatch
from partitions.attempts import Attempt, Mark, active_seconds, attempts_of, work_seconds
from partitions.claiming import live_lease_q
from partitions.models import Delivery, Job, JobEvent, Partition, SubJob
from partitions.projection import COURSE_EVENTS, SETTINGS_EVENTS, JobFacts, Projection, Sample, project
from partitions.sql import queries
from partitions.states import JobStatus, PartitionStatus, SubJobStatus


@dataclass
class Progress:
    """Aggregated state of one job's partitions."""

    partitions: dict[str, int] = field(default_factory=dict)
    items_total: int = 0
    items_done: int = 0
    items_failed: int = 0
    items_skipped: int = 0
    live_leases: int = 0

    @property
    def partitions_total(self) -> int:
        return sum(self.partitions.values())

    @property
    def handled(self) -> int:
        """Items done, failed or skipped."""
        return self.items_done + self.items_failed + self.items_skipped

    @property
    def percent(self) -> float:
        if not self.items_total:
            terminal = self.partitions_total - self.partitions.get("pending", 0) - self.partitions.get("running", 0)
            return 100.0 * terminal / self.partitions_total if self.partitions_total else 0.0
        return 100.0 * self.handled / self.items_total  # never above 100: items_total counts what was handled

    def as_dict(self) -> dict:
        return {
            "partitions": self.partitions, "partitions_total": self.partitions_total,
            "items_total": self.items_total, "items_done": self.items_done, "items_failed": self.items_failed,
            "items_skipped": self.items_skipped, "live_leases": self.live_leases, "percent": round(self.percent, 2),
        }


def jobs_progress(job_ids: list[int]) -> dict[int, Progress]:
    """Progress of many jobs with one grouped query.

    A partition's items are its estimate or what it handled, whichever is more: an estimate taken at planning
    may fall short (rows added since), and progress must never pass 100% nor count another job's work.
    """
    result: dict[int, Progress] = defaultdict(Progress)
    handled = F("done_items") + F("failed_items") + F("skipped_items")
    rows = (
        Partition.objects.filter(job_id__in=job_ids).values("job_id", "status")
        .annotate(n=Count("id"), est=Sum(Greatest("estimated_items", handled)), done=Sum("done_items"),
                  failed=Sum("failed_items"), skipped=Sum("skipped_items"),
                  live=Count("id", filter=live_lease_q()))
        .order_by()
    )
    for row in rows:
        progress = result[row["job_id"]]
        progress.partitions[row["status"]] = row["n"]
        progress.items_total += row["est"] or 0
        progress.items_done += row["done"] or 0
        progress.items_failed += row["failed"] or 0
        progress.items_skipped += row["skipped"] or 0
        progress.live_leases += row["live"]
    return {job_id: result[job_id] for job_id in job_ids}


def job_progress(job_id: int) -> Progress:
    return jobs_progress([job_id])[job_id]


def job_get(job_id: int) -> Job:
    from partitions.exceptions import JobNotFound

    try:
        return Job.objects.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise JobNotFound(job_id) from None


# Rates, projections and operator views ---------------------------------------------------------------------------

#: Seconds of JobSample history that make "current" throughput.
RATE_WINDOW_SECONDS = 300


@dataclass
class JobStats:
    """Progress of one job, its attempts and its projection (`partitions.projection`), on the database clock."""

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


def _round(value: float | None, digits: int) -> float | None:
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
               and (m.type != "job_settings_changed" or "max_parallel" in m.data)]
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
        cancelled_by = next((m.actor for m in reversed(marks[job.pk]) if m.type == "job_cancelled"), "")
        stats[job.pk] = JobStats(job=job, progress=p, now=now, projection=project(facts), attempts=attempts,
                                 cancelled_by=cancelled_by)
    return stats


def job_stats(job: Job) -> JobStats:
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


def _lease_claimed_at() -> Case:
    # The claim event of the current lease; only evaluated for running rows (FK index on partition_id).
    claimed = (JobEvent.objects.filter(partition_id=OuterRef("pk"), type="partition_claimed")
               .order_by("-id").values("created_at")[:1])
    return Case(When(status=PartitionStatus.RUNNING, then=Subquery(claimed)), default=None)


_PARTITION_COLUMNS = ("id", "job_id", "seq", "kind", "lower", "upper", "modulus", "remainder", "status",
                      "checkpoint", "estimated_items", "done_items", "failed_items", "skipped_items", "attempts",
                      "max_attempts", "available_at", "lease_owner", "lease_expires_at", "checkpointed_at",
                      "batch_size", "split_from", "started_at", "finished_at", "last_error")


def job_partitions(job_id: int, *, status: str | None = None) -> QuerySet[Partition]:
    """A job's partitions in seq order, without tracebacks, with `lease_claimed_at` and `db_now`."""
    qs = Partition.objects.filter(job_id=job_id).only(*_PARTITION_COLUMNS).order_by("seq")
    if status:
        qs = qs.filter(status=status)
    return qs.annotate(lease_claimed_at=_lease_claimed_at(), db_now=Now())


def job_splits(job_id: int) -> int:
    """How many partitions of a job were split off another (idle workers, or a partition that timed out)."""
    return Partition.objects.filter(job_id=job_id, split_from__isnull=False).count()


def job_failed_subjobs(job_id: int) -> QuerySet[SubJob]:
    """Failed sub-jobs of a job in seq order (index subjob_job_status_idx)."""
    return (SubJob.objects.filter(job_id=job_id, status=SubJobStatus.FAILED)
            .only("id", "job_id", "partition_id", "seq", "key", "status", "attempts", "error", "finished_at")
            .order_by("seq"))


def job_events(job_id: int, *, before_id: int | None = None, limit: int = 50) -> list[JobEvent]:
    """Newest first, keyset-paginated by id (no COUNT over a long timeline); one extra row tells 'more'."""
    qs = JobEvent.objects.filter(job_id=job_id).select_related("actor_user").order_by("-id")
    if before_id:
        qs = qs.filter(id__lt=before_id)
    return list(qs[: limit + 1])


def job_deliveries(job_id: int, *, limit: int = 50) -> list[Delivery]:
    """A job's newest notifications and their delivery status (index delivery_job_idx)."""
    return list(Delivery.objects.filter(job_id=job_id).defer("payload").order_by("-id")[:limit])


def leases_live(*, limit: int = 500) -> QuerySet[Partition]:
    """Running partitions whose lease has not expired (database clock), oldest claim first."""
    return (Partition.objects.filter(live_lease_q())
            .select_related("job").only(*_PARTITION_COLUMNS, "job__type_name", "job__status")
            .annotate(lease_claimed_at=_lease_claimed_at(), db_now=Now())
            .order_by("lease_owner", "job_id", "seq")[:limit])


@dataclass(frozen=True)
class WorkerSeen:
    worker: str
    last_seen: datetime | None
    claims: int
    live_leases: int


def workers_recent(*, window_seconds: float = 900, scan_events: int = 20_000) -> list[WorkerSeen]:
    """Workers seen lately: owners of live leases and claimers among the newest events."""
    # JobEvent has no index on created_at: bound the scan by id (newest N events) instead.
    newest = JobEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    claims = {
        row["actor"]: row for row in
        JobEvent.objects.filter(id__gt=newest - scan_events, type="partition_claimed",
                                created_at__gte=Now() - timedelta(seconds=window_seconds))
        .values("actor").annotate(last=Max("created_at"), n=Count("id")).order_by()
    }
    leases = {
        row["lease_owner"]: row for row in
        Partition.objects.filter(live_lease_q())
        .values("lease_owner").annotate(n=Count("id"), last=Max(Coalesce("checkpointed_at", "started_at")))
        .order_by()
    }
    seen = []
    for name in sorted(claims.keys() | leases.keys()):
        c, lease = claims.get(name, {}), leases.get(name, {})
        stamps = [t for t in (c.get("last"), lease.get("last")) if t is not None]
        seen.append(WorkerSeen(worker=name, last_seen=max(stamps) if stamps else None, claims=c.get("n", 0),
                               live_leases=lease.get("n", 0)))
    return seen


def partitions_failed_subjob_ids(partition_ids: list[int]) -> dict[int, list[int]]:
    """Failed sub-job ids of some partitions, grouped by job (for a retry of a selection)."""
    grouped: dict[int, list[int]] = defaultdict(list)
    rows = (SubJob.objects.filter(partition_id__in=partition_ids, status=SubJobStatus.FAILED)
            .values_list("job_id", "id").order_by("job_id", "id"))
    for job_id, subjob_id in rows:
        grouped[job_id].append(subjob_id)
    return dict(grouped)
