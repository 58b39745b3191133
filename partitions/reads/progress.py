"""Progress of jobs, aggregated from their partitions in one grouped query (never a hot counter)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Sum
from django.db.models.functions import Greatest

from partitions.engine.claiming import handled_items, live_lease_q
from partitions.models import Partition


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
    rows = (
        Partition.objects.filter(job_id__in=job_ids).values("job_id", "status")
        .annotate(n=Count("id"), est=Sum(Greatest("estimated_items", handled_items())), done=Sum("done_items"),
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
    """Progress of one job."""
    return jobs_progress([job_id])[job_id]
