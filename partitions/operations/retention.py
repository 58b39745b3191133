"""Retention: the history of jobs finished long ago is deleted in bounded batches; the job stays.

What goes: a finished job's partition and sub-job events (the bulk: one claimed and one finished event per
partition attempt), its throughput samples and its sub-jobs. What stays: the job row with its final stats,
its partitions (their counters feed the `_total` metrics) and its job-level events (created, steps,
operator actions: the audit trail). Every DELETE removes at most `batch_size` rows, so no statement holds
locks or bloats WAL for long, and a run stops after `max_batches` statements (tick's share per minute).
Sub-job events go before the sub-jobs they point at.

A floor keeps a careless `prune --older-than 0m` from wiping the history of jobs that just finished (the ones an
operator is most likely still reading): ages under PARTITIONS_PRUNE_FLOOR_SECONDS (a day) are refused unless
the caller passes `force=True` (`jobs prune --force`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.db import connection

from partitions import conf
from partitions.core.exceptions import InvalidParams
from partitions.engine.sql import queries

#: (report field, the registry's batch DELETE), in deletion order.
HISTORY = [
    ("events", "history_delete_events"),
    ("samples", "history_delete_samples"),
    ("subjobs", "history_delete_subjobs"),
]
#: Jobs taken per round: their history is deleted together, batch by batch.
JOBS_PER_ROUND = 50


@dataclass
class PruneReport:
    jobs: int = 0
    events: int = 0
    samples: int = 0
    subjobs: int = 0
    statements: int = 0
    #: False when the run stopped at max_batches with history still due.
    complete: bool = True

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


def prune_floor() -> timedelta:
    """The youngest age `history_prune` accepts without `force`."""
    return timedelta(seconds=conf.get("PRUNE_FLOOR_SECONDS"))


def history_prune(*, older_than: timedelta, batch_size: int = 5000, max_batches: int | None = None,
                  force: bool = False) -> PruneReport:
    """Delete the history of jobs finished more than `older_than` ago (database clock), in batches. An age
    under the floor is InvalidParams (nothing deleted) unless `force`."""
    if older_than < prune_floor() and not force:
        raise InvalidParams("prune", {"older_than": [
            f"{older_than} is younger than the floor of {prune_floor()} (PARTITIONS_PRUNE_FLOOR_SECONDS): "
            "give --force to prune younger history"]})
    report = PruneReport()
    age = older_than.total_seconds()
    while True:
        with connection.cursor() as cursor:
            cursor.execute(queries["jobs_history_due"], {"age": age, "jobs": JOBS_PER_ROUND})
            job_ids = [row[0] for row in cursor.fetchall()]
        if not job_ids:
            return report
        for field, statement in HISTORY:
            if not _delete_all(report, field, queries[statement],
                               {"job_ids": job_ids, "age": age, "n": batch_size}, max_batches):
                report.complete = False
                return report
        with connection.cursor() as cursor:
            cursor.execute(queries["jobs_mark_pruned"], {"job_ids": job_ids})
        report.jobs += len(job_ids)


def _delete_all(report: PruneReport, field: str, sql: str, params: dict, max_batches: int | None) -> bool:
    """Run one batch DELETE until it removes less than a batch; False when the statement budget ran out first."""
    while max_batches is None or report.statements < max_batches:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            deleted = cursor.rowcount
        report.statements += 1
        setattr(report, field, getattr(report, field) + deleted)
        if deleted < params["n"]:
            return True
    return False
