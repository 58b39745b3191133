"""Reads for the admin, the CLI and finalize: progress is aggregated from partitions, never a hot counter."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum
from django.db.models.functions import Now

from partitions.models import Job, Partition
from partitions.states import PartitionStatus


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
        return min(100.0, 100.0 * handled / self.items_total)

    def as_dict(self) -> dict:
        return {
            "partitions": self.partitions, "partitions_total": self.partitions_total,
            "items_total": self.items_total, "items_done": self.items_done, "items_failed": self.items_failed,
            "items_skipped": self.items_skipped, "live_leases": self.live_leases, "percent": round(self.percent, 2),
        }


def jobs_progress(job_ids: list[int]) -> dict[int, Progress]:
    """Progress of many jobs with two grouped queries."""
    result: dict[int, Progress] = defaultdict(Progress)
    rows = (
        Partition.objects.filter(job_id__in=job_ids).values("job_id", "status")
        .annotate(n=Count("id"), est=Sum("estimated_items"), done=Sum("done_items"),
                  failed=Sum("failed_items"), skipped=Sum("skipped_items"),
                  live=Count("id", filter=Q(status=PartitionStatus.RUNNING, lease_expires_at__gt=Now())))
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
