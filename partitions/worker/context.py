"""What job code gets with each batch or item (`Context`), and the per-drain cache of a job's setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from partitions.core.encoding import dumps
from partitions.jobtypes import registry
from partitions.models import Job, Partition, SubJob
from partitions.worker.compiled import CompiledRows


@dataclass
class Context:
    """What job code gets with every batch or item."""

    job: Job
    partition: Partition
    params: dict[str, Any]
    worker_id: str

    def idempotency_key(self, item) -> str:
        """Stable across retries and workers: job id plus the item's identity."""
        ident = f"{item.key}" if isinstance(item, SubJob) else f"{type(item)._meta.label_lower}:{item.pk}"
        return f"job-{self.job.pk}:{ident}"


@dataclass(frozen=True)
class JobSetup:
    """A job with its type and typed params: looked up once per job per drain, not once per partition."""

    job: Job
    job_type: Any
    params: dict[str, Any]
    #: The job type's queryset per partition scope, built once (a default queryset() calls split()).
    _querysets: dict[str, QuerySet] = field(default_factory=dict, compare=False, repr=False)
    #: The same querysets compiled once (`CompiledRows`): a partition's fetch binds only its bounds.
    _rows: dict[str, CompiledRows] = field(default_factory=dict, compare=False, repr=False)
    #: The batch size the last run of an adaptive job reached here: the next partition starts from it.
    learned: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def queryset(self, scope: dict) -> QuerySet:
        """The rows partitions with this scope read; lazy, and only ever narrowed by filters, so safe to share."""
        key = dumps(scope, sort_keys=True)
        if key not in self._querysets:
            self._querysets[key] = self.job_type.queryset(self.job, self.params, scope)
        return self._querysets[key]


    def rows(self, scope: dict) -> CompiledRows:
        """`queryset(scope)` compiled once for this drain."""
        key = dumps(scope, sort_keys=True)
        if key not in self._rows:
            self._rows[key] = CompiledRows(self.queryset(scope))
        return self._rows[key]


def job_setup(job_id: int, cache: dict[int, JobSetup] | None = None) -> JobSetup:
    """The job's setup, from `cache` when it holds it (the job's status in it may be stale: status
    changes reach a running partition through its fenced checkpoint, never through this object)."""
    if cache is not None and job_id in cache:
        return cache[job_id]
    job = Job.objects.get(pk=job_id)
    job_type = registry.get(job.type_name)
    setup = JobSetup(job, job_type, job_type.load_params(job.params))
    if cache is not None:
        cache[job_id] = setup
    return setup
