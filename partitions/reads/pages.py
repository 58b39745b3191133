"""Reads behind the operators' pages and commands: a job by id, its partitions, failed sub-jobs, timeline and
notifications, the live leases and the workers seen lately."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, Max, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import Coalesce, Now

from partitions.core.events import EventType
from partitions.core.exceptions import JobNotFound
from partitions.core.states import PartitionStatus, SubJobStatus
from partitions.engine.claiming import live_lease_q
from partitions.models import Delivery, Job, JobEvent, Partition, SubJob


def job_get(job_id: int) -> Job:
    """The job with this id; JobNotFound for any id that names none (malformed ones included)."""
    try:
        return Job.objects.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise JobNotFound(job_id) from None


def _lease_claimed_at() -> Case:
    # The claim event of the current lease; only evaluated for running rows (FK index on partition_id).
    claimed = (JobEvent.objects.filter(partition_id=OuterRef("pk"), type=EventType.PARTITION_CLAIMED)
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
        JobEvent.objects.filter(id__gt=newest - scan_events, type=EventType.PARTITION_CLAIMED,
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
