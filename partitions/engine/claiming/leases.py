"""Partition leases: claim (skipping rows others hold, one short transaction), renew, checkpoint, complete.

Rules kept here:
- No row lock is held while a partition is processed.
- Leases and every timestamp come from the database clock (`statement_timestamp()`, which is what Django's
  Now() uses on PostgreSQL, so ORM and raw SQL agree even inside one transaction).
- Every write a worker makes about a claimed partition carries its `lease_token` in its guard; zero
  rows means the lease is gone and raises LeaseLost, so the caller rolls back its batch.
The statements are the registry's (`partitions/engine/sql/leases.sql`).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from partitions import conf
from partitions.core.encoding import dumps
from partitions.core.exceptions import BoundsMoved, LeaseLost
from partitions.engine.lifecycle import Actor
from partitions.engine.sql import queries
from partitions.engine.throttling import JobControls
from partitions.models import Partition

#: The job's controls close every claimed row (the claim's last columns, in JobControls order).
_CONTROLS = 5


def _fetch_partitions(cursor) -> list[Partition]:
    # from_db() wants values in model field order, converted (JSON arrives as text);
    # the statement returns raw values in table order.
    names = [col.name for col in cursor.description][:-_CONTROLS]
    fields = Partition._meta.concrete_fields
    partitions = []
    for row in cursor.fetchall():
        by_name = dict(zip(names, row[:-_CONTROLS], strict=True))
        values = [
            f.from_db_value(by_name[f.attname], None, connection) if hasattr(f, "from_db_value") else by_name[f.attname]
            for f in fields
        ]
        partition = Partition.from_db(connection.alias, [f.attname for f in fields], values)
        partition.job_controls = JobControls.from_row(row[-_CONTROLS:])
        partitions.append(partition)
    return partitions


def partition_claim(*, worker_id: str, lease_seconds: float, job_id: int | None = None,
                    limit: int = 1) -> list[Partition]:
    """Claim up to `limit` claimable partitions of the best running job; [] when none.

    An uncapped job is claimed by one statement (atomic on its own: two round trips in all, no BEGIN/COMMIT);
    a job with max_parallel takes its job-row lock first, in a transaction, so two claimers cannot both see
    the last free slot (`free_slots`, the rule `claiming.slots` shares).
    """
    params = {"owner": worker_id, "lease": lease_seconds, "track_backend": conf.get("DETECT_DEAD_BACKENDS")}
    for candidate_id, max_parallel in _jobs_with_claimable_work(job_id):
        if not max_parallel:
            with connection.cursor() as cursor:
                cursor.execute(queries["partition_claim"], {**params, "job_id": candidate_id, "limit": limit})
                claimed = _fetch_partitions(cursor)
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(queries["job_lock_for_claim"], {"job_id": candidate_id})
                if cursor.fetchone() is None:
                    continue
                cursor.execute(queries["job_free_slots"], {"job_id": candidate_id})
                free = cursor.fetchone()[0]  # after the lock: a fresh snapshot sees every committed claim
                slots = limit if free is None else min(limit, free)
                if slots <= 0:
                    continue
                cursor.execute(queries["partition_claim"], {**params, "job_id": candidate_id, "limit": slots})
                claimed = _fetch_partitions(cursor)
        if claimed:
            return claimed
    return []


def _jobs_with_claimable_work(job_id: int | None) -> list[tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(queries["jobs_with_claimable_work"], {"job_id": job_id})
        return cursor.fetchall()


def _scalar(name: str, params: dict | None = None):
    with connection.cursor() as cursor:
        cursor.execute(queries[name], params or {})
        return cursor.fetchone()[0]


def partitions_claimable_count() -> int:
    """Partitions of running jobs that could be claimed now (max_parallel aside)."""
    return int(_scalar("partitions_claimable_count"))


def jobs_with_claimable_work(job_id: int | None = None) -> list[int]:
    """Running jobs (or just `job_id`) that have a claimable partition now, best first."""
    return [job for job, _ in _jobs_with_claimable_work(job_id)]


def seconds_until_claimable(job_id: int | None = None) -> float | None:
    """How long until some partition becomes claimable (<= 0: now); None when nothing is left to claim."""
    seconds = _scalar("partition_seconds_until_claimable", {"job_id": job_id})
    return None if seconds is None else float(seconds)


def db_now():
    """The database clock (statement_timestamp())."""
    return _scalar("db_now")


def partitions_renew_leases(leases: list[tuple[int, int, float]]) -> set[int]:
    """Extend held leases, (partition id, token, lease seconds) each, in one statement; the ids still held."""
    ids, tokens, seconds = (list(column) for column in zip(*leases, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(queries["partitions_renew_leases_if_held"], {"ids": ids, "tokens": tokens, "leases": seconds})
        return {row[0] for row in cursor.fetchall()}


def partition_checkpoint(partition_id: int, token: int, *, checkpoint: Any, done: int = 0, failed: int = 0,
                         skipped: int = 0, lease_seconds: float, batch_size: int | None = None,
                         bounds_version: int | None = None) -> JobControls:
    """Record progress (and renew the lease); return the job's controls. Raises LeaseLost, or BoundsMoved
    (writing nothing) when `bounds_version` is given and a split has changed the bounds since."""
    params = {"id": partition_id, "token": token, "checkpoint": dumps(checkpoint), "batch_size": batch_size,
              "done": done, "failed": failed, "skipped": skipped, "lease": lease_seconds,
              "bounds_version": bounds_version}
    with connection.cursor() as cursor:
        cursor.execute(queries["partition_checkpoint_if_held"], params)
        row = cursor.fetchone()
        if row is None and bounds_version is not None:
            cursor.execute(queries["partition_bounds_moved"], params)
            if cursor.fetchone() is not None:
                raise BoundsMoved(partition_id, token)
    if row is None:
        raise LeaseLost(partition_id, token)
    return JobControls.from_row(row)


def partitions_complete(held: list[tuple[int, int, dict]], *, actor: Any) -> tuple[set[int], set[int]]:
    """Mark held partitions succeeded, (id, token, event data) each, in one statement.

    Returns the ids that moved (a lease lost meanwhile leaves its row alone) and the jobs those left with
    no unfinished partition.
    """
    if not held:
        return set(), set()
    ids, tokens, data = (list(column) for column in zip(*held, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(queries["partitions_complete_if_held"], {
            "ids": ids, "tokens": tokens, "actor": Actor.of(actor).label,
            "data": [dumps(d) for d in data]})
        moved = dict(cursor.fetchall())
        if not moved:
            return set(), set()
    # Counted after our commit (autocommit: the statement above is committed): when the last two
    # partitions finish at once, each statement would still see the other one running; afterwards at
    # least the later one sees none left (both may, and the finalize claim lets only one through).
    return set(moved), set(jobs_without_unfinished_partitions(sorted(set(moved.values()))))


def jobs_without_unfinished_partitions(job_ids: list[int] | None = None) -> list[int]:
    """Which of these jobs (None: every running job) have no unfinished partition left."""
    with connection.cursor() as cursor:
        cursor.execute(queries["jobs_without_unfinished_partitions"], {"job_ids": job_ids})
        return [row[0] for row in cursor.fetchall()]
