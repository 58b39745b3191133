"""Free slots under a job's max_parallel: the registry's one `free_slots(j)` rule, for every caller.

The claim takes no more than a job's free slots, an idle worker splits a partition only for a job with a free
slot, a worker hands its partition back when the job is over its (lowered) cap, and the dispatcher counts the
fleet's startable partitions by the same rule, so none of them can disagree about what "full" means.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from partitions.engine.sql import queries


def _rows(name: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(queries[name], params)
        return cursor.fetchall()


def job_free_slots(job_id: int) -> int | None:
    """How many more partitions the job may run now (negative: over its cap); None when it is uncapped."""
    rows = _rows("job_free_slots", {"job_id": job_id})
    return rows[0][0] if rows else 0


def jobs_with_free_slot(job_ids: Iterable[int]) -> set[int]:
    """Which of these jobs may run one more partition now."""
    return {job_id for (job_id,) in _rows("jobs_with_free_slot", {"job_ids": sorted(set(job_ids))})}


def partitions_over_cap(job_id: int) -> frozenset[int]:
    """The job's live partitions beyond its max_parallel: the highest ids (every process picks the same ones)."""
    return frozenset(partition_id for (partition_id,) in _rows("job_partitions_over_cap", {"job_id": job_id}))


def claimable_slots(*, cap: int = 1000) -> int:
    """Partitions that could start now across every running job (claimable, within max_parallel)."""
    return int(_rows("claimable_slots", {"cap": cap})[0][0])
