"""Reads for the admin, the CLI and finalize: progress is aggregated from partitions, never a hot counter."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from django.db import connection
from django.db.models import Case, Count, F, Max, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce, Greatest, Now

from partitions.claiming import live_lease_q
from partitions.models import Delivery, Job, JobEvent, Partition, SubJob
from partitions.sql import SQL_JOB_SAMPLES_THINNED, SQL_JOBS_SAMPLE_WINDOW
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
    def percent(self) -> float:
        if not self.items_total:
            terminal = self.partitions_total - self.partitions.get("pending", 0) - self.partitions.get("running", 0)
            return 100.0 * terminal / self.partitions_total if self.partitions_total else 0.0
        handled = self.items_done + self.items_failed + self.items_skipped
        return 100.0 * handled / self.items_total  # never above 100: items_total counts what was handled

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
    """Progress of one job plus its throughput and projections, measured on the database clock."""

    job: Job
    progress: Progress
    now: datetime
    rate: float | None = None
    rate_source: str = ""
    workers: float = 0.0

    @property
    def handled(self) -> int:
        p = self.progress
        return p.items_done + p.items_failed + p.items_skipped

    @property
    def remaining_items(self) -> int:
        return max(0, self.progress.items_total - self.handled)

    @property
    def elapsed_seconds(self) -> float | None:
        if self.job.started_at is None:
            return None
        return max(0.0, ((self.job.finished_at or self.now) - self.job.started_at).total_seconds())

    @property
    def eta_seconds(self) -> float | None:
        """Seconds to finish at the current rate; None when unknown or not running."""
        if self.job.status != JobStatus.RUNNING:
            return None
        if not self.remaining_items:
            return 0.0
        return self.remaining_items / self.rate if self.rate else None

    @property
    def projected_finish(self) -> datetime | None:
        eta = self.eta_seconds
        return None if eta is None else self.now + timedelta(seconds=eta)

    @property
    def per_worker_rate(self) -> float | None:
        """Items/s one lease (partition in flight) achieves, averaged over the rate window."""
        return self.rate / self.workers if self.rate and self.workers else None

    @property
    def deadline_seconds_left(self) -> float | None:
        return None if self.job.deadline is None else (self.job.deadline - self.now).total_seconds()

    @property
    def meets_deadline(self) -> bool | None:
        finish = self.projected_finish
        if self.job.deadline is None or finish is None:
            return None
        return finish <= self.job.deadline

    @property
    def workers_needed(self) -> int | None:
        """Parallel leases needed to finish the remaining items by the deadline at the per-worker rate."""
        left, per_worker = self.deadline_seconds_left, self.per_worker_rate
        if self.job.is_terminal or left is None or left <= 0 or not per_worker:
            return None
        return max(1, math.ceil(self.remaining_items / (per_worker * left)))

    def throttle(self) -> dict:
        """The job's throttle as every surface shows it (the job page's line, `jobs status`); `held`: a health
        check holds it now (an episode left open on a job that has ended is not shown)."""
        job = self.job
        return {"rate_limit": job.rate_limit, "pause_ms": job.pause_ms, "ignore_health": job.ignore_health,
                "throttled_since": job.throttled_since, "throttled_reason": job.throttled_reason,
                "held": job.throttled_since is not None and not job.is_terminal}

    def figures(self) -> dict:
        """The figures every surface shows (job page, job list, progress JSON, `jobs status --json`, the deadline
        warning), all from this one computation, so no two of them can disagree."""
        return {
            "percent": round(self.progress.percent, 2),
            "items_per_second": round(self.rate or 0.0, 2),
            "rate_source": self.rate_source,
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "eta": self.projected_finish,
            "deadline": self.job.deadline,
            "meets_deadline": self.meets_deadline,
            "workers_needed": self.workers_needed,
            "per_worker_rate": None if self.per_worker_rate is None else round(self.per_worker_rate, 3),
            "live_leases": self.progress.live_leases,
        }


def jobs_stats(jobs: Sequence[Job], *, window_seconds: float = RATE_WINDOW_SECONDS) -> dict[int, JobStats]:
    """Progress, throughput and ETA of many jobs with three queries (progress, samples window, clock)."""
    if not jobs:
        return {}
    ids = [job.pk for job in jobs]
    progress = jobs_progress(ids)
    with connection.cursor() as cursor:
        cursor.execute(SQL_JOBS_SAMPLE_WINDOW, {"ids": ids, "window": window_seconds})
        window = {row[0]: row[1:] for row in cursor.fetchall()}
    stats = {}
    for job in jobs:
        now, first_at, first_handled, avg_live = window[job.pk]
        s = JobStats(job=job, progress=progress[job.pk], now=now)
        s.workers = float(avg_live) if avg_live is not None else float(s.progress.live_leases)
        if job.status == JobStatus.RUNNING and first_at is not None and now > first_at:
            # Current rate: from the window's first sample to the live counters now.
            s.rate = max(0.0, (s.handled - first_handled) / (now - first_at).total_seconds())
            s.rate_source = "samples"
        else:
            began = job.planned_at or job.started_at
            end = job.finished_at or (job.paused_at if job.status == JobStatus.PAUSED else None) or now
            if began is not None and end > began and s.handled:
                s.rate, s.rate_source = s.handled / (end - began).total_seconds(), "average"
        stats[job.pk] = s
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
        cursor.execute(SQL_JOB_SAMPLES_THINNED, {"job_id": job_id, "points": max_points})
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
