"""All locking, lease, fencing and reaping SQL, each statement named and described once.

Rules this module keeps:
- Claims are one short transaction with `FOR UPDATE SKIP LOCKED`; no row lock
  is held while a partition is processed.
- Leases and every timestamp come from the database clock (`statement_timestamp()`, which is
  what Django's Now() uses on PostgreSQL, so ORM and raw SQL agree even inside one transaction).
- Every write a worker makes about a claimed partition carries its
  `lease_token` in the WHERE clause; zero rows means the lease is gone and
  raises LeaseLost, so the caller rolls back its batch.
- The status guards come from the transition table (`states.sources`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

from partitions import conf
from partitions.encoding import dumps
from partitions.exceptions import BoundsMoved, LeaseLost
from partitions.lifecycle import Actor, transition, transition_many
from partitions.models import Job, JobSchedule, Partition
from partitions.states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    PARTITION_TERMINAL,
    PARTITION_TRANSITIONS,
    JobStatus,
    PartitionStatus,
    sources,
)
from partitions.throttling import CONTROL_COLUMNS, JobControls


def _sql_list(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def lease_lapsed(p: str = "p") -> str:
    """SQL: the running partition `p`'s lease is gone: expired in DB time, or the backend that claimed it exited.

    A killed worker's connection closes, so its backend leaves pg_stat_activity at once; fencing makes taking
    such a partition away early safe. A backend whose start time is hidden from us counts as alive.
    """
    return f"""({p}.lease_expires_at <= statement_timestamp()
        OR ({p}.lease_backend_pid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_stat_get_activity({p}.lease_backend_pid) a
            WHERE a.backend_start IS NULL OR a.backend_start = {p}.lease_backend_started)))"""


def claimable(p: str = "p") -> str:
    """SQL: partition `p` can be claimed now: pending and due, or running with a lapsed lease and attempts left.

    The one definition of "claimable": claiming, the drain's wait, the dispatcher and tick all use it.
    """
    return f"""({p}.status IN ({_sql_list(sources(PARTITION_TRANSITIONS, PartitionStatus.RUNNING))})
        AND (({p}.status = 'pending' AND {p}.available_at <= statement_timestamp())
             OR ({p}.status = 'running' AND {p}.attempts < {p}.max_attempts AND {lease_lapsed(p)})))"""


def _will_be_claimable(p: str = "p") -> str:
    # Claimable now or later without anyone's help: a running lease on its last attempt never is (tick fails it).
    return f"({p}.status = 'pending' OR ({p}.status = 'running' AND {p}.attempts < {p}.max_attempts))"


def _live_lease(p: str = "p") -> str:
    return f"({p}.status = 'running' AND NOT {lease_lapsed(p)})"


def live_lease_q() -> Q:
    """ORM: partitions held by a live lease, by the same SQL as claiming (so the console never disagrees)."""
    return Q(status=PartitionStatus.RUNNING) & Q(pk__in=RawSQL(
        f"SELECT p.id FROM partitions_partition p WHERE {_live_lease()}", []))


def lapsed_lease_q() -> Q:
    """ORM: running partitions whose lease lapsed (expired, or its holder's backend is gone)."""
    return Q(status=PartitionStatus.RUNNING) & ~live_lease_q()


# Jobs with claimable work, best first: priority, then the fewest live leases (equal priorities share the
# fleet), then age. The EXISTS walks only the partial index partition_claimable_idx, so finished partitions
# cost nothing.
SQL_JOBS_WITH_CLAIMABLE_WORK = f"""
    SELECT j.id, j.max_parallel FROM partitions_job j
    WHERE j.status = 'running' AND (%(job_id)s::bigint IS NULL OR j.id = %(job_id)s::bigint)
      AND EXISTS (SELECT 1 FROM partitions_partition p WHERE p.job_id = j.id AND {claimable()})
    ORDER BY j.priority DESC,
             (SELECT count(*) FROM partitions_partition l WHERE l.job_id = j.id AND {_live_lease("l")}),
             j.id
    LIMIT 20
"""

# Partitions that could start now across the fleet: each running job's claimable partitions, capped by its
# free max_parallel slots, summed (at most %(cap)s per job, so the count stays cheap).
SQL_CLAIMABLE_SLOTS = f"""
    SELECT coalesce(sum(CASE WHEN j.max_parallel = 0 THEN c.n
                             ELSE least(c.n, greatest(0, j.max_parallel - (
                                 SELECT count(*) FROM partitions_partition l
                                 WHERE l.job_id = j.id AND {_live_lease("l")}))) END), 0)
    FROM partitions_job j
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
        SELECT 1 FROM partitions_partition p WHERE p.job_id = j.id AND {claimable()} LIMIT %(cap)s) x) c
    WHERE j.status = 'running' AND c.n > 0
"""

# Serialise claimers of one capped job so two of them cannot both see a free
# slot (max_parallel). NO KEY UPDATE does not block inserts of child rows.
SQL_JOB_LOCK_FOR_CLAIM = "SELECT 1 FROM partitions_job WHERE id = %(job_id)s AND status = 'running' FOR NO KEY UPDATE"

# Leases currently alive for a job (database clock, holder's backend present).
SQL_JOB_LIVE_LEASES = f"""
    SELECT count(*) FROM partitions_partition p WHERE p.job_id = %(job_id)s AND {_live_lease()}
"""

# Claim up to `limit` partitions of one job: lock candidates skipping rows other
# claimers hold, bump the fencing token and the attempt, set the lease in DB
# time, and log one event per claim, all in one round trip.
SQL_PARTITION_CLAIM = f"""
    WITH picked AS (
        SELECT p.id FROM partitions_partition p
        WHERE p.job_id = %(job_id)s AND {claimable()}
        ORDER BY p.available_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), me AS (
        SELECT pid, backend_start FROM pg_stat_get_activity(pg_backend_pid()) WHERE %(track_backend)s
    ), claimed AS (
        UPDATE partitions_partition p
        SET status = 'running', lease_owner = %(owner)s, lease_token = p.lease_token + 1,
            lease_expires_at = statement_timestamp() + make_interval(secs => %(lease)s), attempts = p.attempts + 1,
            started_at = coalesce(p.started_at, statement_timestamp()),
            lease_backend_pid = (SELECT pid FROM me), lease_backend_started = (SELECT backend_start FROM me)
        FROM picked WHERE p.id = picked.id
        RETURNING p.*
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, partition_id, type, actor, data, created_at)
        SELECT job_id, id, 'partition_claimed', %(owner)s,
               jsonb_build_object('token', lease_token, 'attempt', attempts), statement_timestamp()
        FROM claimed
    )
    SELECT claimed.*, {", ".join(f"j.{c} AS job_{n}" for n, c in enumerate(CONTROL_COLUMNS.split(", ")))}
    FROM claimed JOIN partitions_job j ON j.id = claimed.job_id ORDER BY claimed.seq
"""

# Seconds until the next partition of a running job becomes claimable (0 or less: now; NULL: none will be
# without help: a lease on its last attempt is left for tick to fail).
SQL_SECONDS_UNTIL_CLAIMABLE = f"""
    SELECT EXTRACT(EPOCH FROM min(CASE WHEN {claimable()} THEN statement_timestamp()
                                       WHEN p.status = 'pending' THEN p.available_at
                                       ELSE p.lease_expires_at END)
                              - statement_timestamp())
    FROM partitions_partition p JOIN partitions_job j ON j.id = p.job_id
    WHERE {_will_be_claimable()} AND j.status = 'running'
      AND (%(job_id)s::bigint IS NULL OR p.job_id = %(job_id)s::bigint)
"""

# Partitions of running jobs claimable now, fleet-wide (what /metrics reports).
SQL_PARTITIONS_CLAIMABLE_COUNT = f"""
    SELECT count(*) FROM partitions_partition p JOIN partitions_job j ON j.id = p.job_id
    WHERE j.status = 'running' AND {claimable()}
"""

# One drain in the whole fleet may stand by, watching for a lease that lapses (session lock: it goes away
# with the backend, so a dead watcher frees it at once).
SQL_STANDBY_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('partitions.standby'))"
SQL_STANDBY_UNLOCK = "SELECT pg_advisory_unlock(hashtext('partitions.standby'))"

# Running partitions whose lease lapsed (expired or holder gone), for the reaper.
SQL_PARTITIONS_LEASE_LAPSED = f"SELECT p.id FROM partitions_partition p WHERE p.status = 'running' AND {lease_lapsed()}"

# Renew a lease; fenced. Returns the job's status so the worker notices pause/cancel.
SQL_PARTITION_RENEW_LEASE_IF_HELD = """
    UPDATE partitions_partition p SET lease_expires_at = statement_timestamp() + make_interval(secs => %(lease)s)
    WHERE p.id = %(id)s AND p.lease_token = %(token)s AND p.status = 'running'
    RETURNING (SELECT status FROM partitions_job j WHERE j.id = p.job_id)
"""

# Renew every lease one process holds, in one statement; fenced per row. Returns the ids still held.
SQL_PARTITIONS_RENEW_LEASES_IF_HELD = """
    UPDATE partitions_partition p SET lease_expires_at = statement_timestamp() + make_interval(secs => h.lease)
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(leases)s::float8[]) AS h(id, token, lease)
    WHERE p.id = h.id AND p.lease_token = h.token AND p.status = 'running'
    RETURNING p.id
"""

# Complete held partitions (one or a claimed batch) and log each, in one statement; fenced per row. The
# guard is the transition table's. Returns the rows that moved.
SQL_PARTITIONS_COMPLETE_IF_HELD = f"""
    WITH done AS (
        UPDATE partitions_partition p
        SET status = 'succeeded', finished_at = statement_timestamp(), lease_expires_at = NULL
        FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(data)s::jsonb[]) AS h(id, token, data)
        WHERE p.id = h.id AND p.lease_token = h.token
          AND p.status IN ({_sql_list(sources(PARTITION_TRANSITIONS, PartitionStatus.SUCCEEDED))})
        RETURNING p.id, p.job_id, h.data
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, partition_id, type, actor, data, created_at)
        SELECT job_id, id, 'partition_succeeded', %(actor)s, data, statement_timestamp() FROM done
    )
    SELECT id, job_id FROM done
"""

def all_finished(j: str = "j") -> str:
    """SQL: job `j` has no unfinished partition (every one is terminal). The one definition of "unfinished"."""
    return f"""NOT EXISTS (SELECT 1 FROM partitions_partition u
                       WHERE u.job_id = {j}.id AND u.status NOT IN ({_sql_list(sorted(PARTITION_TERMINAL))}))"""


# Which of these jobs (all running jobs when NULL) have no unfinished partition left: who triggers finalize.
SQL_JOBS_WITHOUT_UNFINISHED_PARTITIONS = f"""
    SELECT j.id FROM partitions_job j
    WHERE (%(job_ids)s::bigint[] IS NULL AND j.status = 'running' OR j.id = ANY(%(job_ids)s::bigint[]))
      AND {all_finished()}
    ORDER BY j.id
"""

# Advance the checkpoint and counters and renew the lease; fenced. A HOT update:
# none of these columns is indexed. Returns the job's controls (pause/cancel, throttle).
SQL_PARTITION_CHECKPOINT_IF_HELD = f"""
    UPDATE partitions_partition p
    SET checkpoint = %(checkpoint)s::jsonb, done_items = p.done_items + %(done)s,
        failed_items = p.failed_items + %(failed)s, skipped_items = p.skipped_items + %(skipped)s,
        checkpointed_at = statement_timestamp(), batch_size = %(batch_size)s,
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease)s)
    FROM partitions_job j
    WHERE p.id = %(id)s AND p.lease_token = %(token)s AND p.status = 'running' AND j.id = p.job_id
      AND (%(bounds_version)s::int IS NULL OR p.bounds_version = %(bounds_version)s::int)
    RETURNING {", ".join(f"j.{c}" for c in CONTROL_COLUMNS.split(", "))}
"""

# Whether a held partition's bounds moved (a split) since `bounds_version`: why a checkpoint matched no row.
SQL_PARTITION_BOUNDS_MOVED = """
    SELECT 1 FROM partitions_partition p
    WHERE p.id = %(id)s AND p.lease_token = %(token)s AND p.status = 'running'
      AND p.bounds_version <> %(bounds_version)s::int
"""

# Claim a singleton step (plan or finalize) of one job: the job row is the lease.
SQL_JOB_STEP_CLAIM = """
    WITH picked AS (
        SELECT j.id FROM partitions_job j
        WHERE j.id = %(job_id)s AND ({condition})
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE partitions_job j
        SET status = %(target)s, step_owner = %(owner)s, step_token = j.step_token + 1,
            step_expires_at = statement_timestamp() + make_interval(secs => %(lease)s),
            started_at = coalesce(j.started_at, statement_timestamp())
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.step_token
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, type, actor, data, created_at)
        SELECT id, %(event)s, %(owner)s, jsonb_build_object('token', step_token), statement_timestamp() FROM claimed
    )
    SELECT step_token FROM claimed
"""

_PLAN_CONDITION = f"""
    j.status IN ({_sql_list(sources(JOB_TRANSITIONS, JobStatus.PLANNING))})
    AND (j.status = 'pending' OR j.step_expires_at <= statement_timestamp())
"""
_FINALIZE_CONDITION = f"""
    j.status IN ({_sql_list(sources(JOB_TRANSITIONS, JobStatus.FINALIZING))})
    AND ((j.status = 'running' AND {all_finished()})
         OR (j.status = 'finalizing' AND j.step_expires_at <= statement_timestamp()))
"""


def _fetch_partitions(cursor) -> list[Partition]:
    # from_db() wants values in model field order, converted (JSON arrives as text);
    # RETURNING gives raw values in table order.
    names = [col.name for col in cursor.description]
    fields = Partition._meta.concrete_fields
    partitions = []
    for row in cursor.fetchall():
        by_name = dict(zip(names, row, strict=True))
        values = [
            f.from_db_value(by_name[f.attname], None, connection) if hasattr(f, "from_db_value") else by_name[f.attname]
            for f in fields
        ]
        partition = Partition.from_db(connection.alias, [f.attname for f in fields], values)
        if "job_0" in by_name:  # the claim returns its job's controls too: a run obeys them from its first batch
            partition.job_controls = JobControls.from_row([by_name[f"job_{n}"] for n in range(5)])
        partitions.append(partition)
    return partitions


def partition_claim(*, worker_id: str, lease_seconds: float, job_id: int | None = None,
                    limit: int = 1) -> list[Partition]:
    """Claim up to `limit` claimable partitions of the best running job; [] when none.

    An uncapped job is claimed by one statement (atomic on its own: two round trips in all, no BEGIN/COMMIT);
    a job with max_parallel takes its job-row lock first, in a transaction, so two claimers cannot both see
    the last free slot.
    """
    params = {"owner": worker_id, "lease": lease_seconds, "track_backend": conf.get("DETECT_DEAD_BACKENDS")}
    for candidate_id, max_parallel in _jobs_with_claimable_work(job_id):
        if not max_parallel:
            with connection.cursor() as cursor:
                cursor.execute(SQL_PARTITION_CLAIM, {**params, "job_id": candidate_id, "limit": limit})
                claimed = _fetch_partitions(cursor)
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(SQL_JOB_LOCK_FOR_CLAIM, {"job_id": candidate_id})
                if cursor.fetchone() is None:
                    continue
                cursor.execute(SQL_JOB_LIVE_LEASES, {"job_id": candidate_id})
                slots = min(limit, max_parallel - cursor.fetchone()[0])
                if slots <= 0:
                    continue
                cursor.execute(SQL_PARTITION_CLAIM, {**params, "job_id": candidate_id, "limit": slots})
                claimed = _fetch_partitions(cursor)
        if claimed:
            return claimed
    return []


def _jobs_with_claimable_work(job_id: int | None) -> list[tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(SQL_JOBS_WITH_CLAIMABLE_WORK, {"job_id": job_id})
        return cursor.fetchall()


def claimable_slots(*, cap: int = 1000) -> int:
    """Partitions that could start now across every running job (claimable, within max_parallel)."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_CLAIMABLE_SLOTS, {"cap": cap})
        return int(cursor.fetchone()[0])


def partitions_claimable_count() -> int:
    """Partitions of running jobs that could be claimed now (max_parallel aside)."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_PARTITIONS_CLAIMABLE_COUNT)
        return int(cursor.fetchone()[0])


def jobs_with_claimable_work(job_id: int | None = None) -> list[int]:
    """Running jobs (or just `job_id`) that have a claimable partition now, best first."""
    return [job for job, _ in _jobs_with_claimable_work(job_id)]


def standby_acquire() -> bool:
    """Become the fleet's one standby drain (held until standby_release or until this connection closes)."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_STANDBY_TRY_LOCK)
        return bool(cursor.fetchone()[0])


def standby_release() -> None:
    with connection.cursor() as cursor:
        cursor.execute(SQL_STANDBY_UNLOCK)


def seconds_until_claimable(job_id: int | None = None) -> float | None:
    """How long until some partition becomes claimable (<= 0: now); None when nothing is left to claim."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_SECONDS_UNTIL_CLAIMABLE, {"job_id": job_id})
        (seconds,) = cursor.fetchone()
    return None if seconds is None else float(seconds)


def _fenced(sql: str, params: dict[str, Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(params["id"], params["token"])
    return row[0]


def partition_renew_lease(partition_id: int, token: int, *, lease_seconds: float) -> str:
    """Extend one held lease; return the job's status. Raises LeaseLost."""
    return _fenced(SQL_PARTITION_RENEW_LEASE_IF_HELD, {"id": partition_id, "token": token, "lease": lease_seconds})


def partitions_renew_leases(leases: list[tuple[int, int, float]]) -> set[int]:
    """Extend held leases, (partition id, token, lease seconds) each, in one statement; the ids still held."""
    ids, tokens, seconds = (list(column) for column in zip(*leases, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(SQL_PARTITIONS_RENEW_LEASES_IF_HELD, {"ids": ids, "tokens": tokens, "leases": seconds})
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
        cursor.execute(SQL_PARTITION_CHECKPOINT_IF_HELD, params)
        row = cursor.fetchone()
        if row is None and bounds_version is not None:
            cursor.execute(SQL_PARTITION_BOUNDS_MOVED, params)
            if cursor.fetchone() is not None:
                raise BoundsMoved(partition_id, token)
    if row is None:
        raise LeaseLost(partition_id, token)
    return JobControls.from_row(row)


def partition_complete(partition_id: int, token: int, *, actor: Any, data: dict | None = None) -> bool:
    """Mark a held partition succeeded; return True when it was the job's last unfinished one. Raises LeaseLost."""
    completed, finished_jobs = partitions_complete([(partition_id, token, data or {})], actor=actor)
    if not completed:
        raise LeaseLost(partition_id, token)
    return bool(finished_jobs)


def partitions_complete(held: list[tuple[int, int, dict]], *, actor: Any) -> tuple[set[int], set[int]]:
    """Mark held partitions succeeded, (id, token, event data) each, in one statement.

    Returns the ids that moved (a lease lost meanwhile leaves its row alone) and the jobs those left with
    no unfinished partition.
    """
    if not held:
        return set(), set()
    ids, tokens, data = (list(column) for column in zip(*held, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(SQL_PARTITIONS_COMPLETE_IF_HELD, {
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
        cursor.execute(SQL_JOBS_WITHOUT_UNFINISHED_PARTITIONS, {"job_ids": job_ids})
        return [row[0] for row in cursor.fetchall()]


def partition_fail(partition_id: int, token: int, *, actor: Any, error: str, traceback: str = "",
                   retry_after: float, final: bool = False) -> str:
    """Give up this attempt: back to pending after `retry_after` s, or failed when out of attempts (cancelled
    when its job has ended meanwhile: nobody would claim it again)."""
    with transaction.atomic():
        current = (Partition.objects.filter(pk=partition_id, lease_token=token, status=PartitionStatus.RUNNING)
                   .select_related("job").only("attempts", "max_attempts", "job__status").first())
        if current is None:
            raise LeaseLost(partition_id, token)
        updates = {"last_error": error[:10_000], "last_traceback": traceback[:50_000]}
        data = {"error": error[:500], "attempt": current.attempts}
        if current.job.status in JOB_TERMINAL:
            transition(Partition, partition_id, PartitionStatus.CANCELLED, actor=actor,
                       event_type="partition_cancelled", data={**data, "reason": f"job {current.job.status}"},
                       guard={"lease_token": token}, updates=updates)
            return PartitionStatus.CANCELLED
        if final or current.attempts >= current.max_attempts:
            transition(Partition, partition_id, PartitionStatus.FAILED, actor=actor, event_type="partition_failed",
                       data=data, guard={"lease_token": token}, updates=updates)
            return PartitionStatus.FAILED
        updates["available_at"] = Now() + timedelta(seconds=retry_after)
        transition(Partition, partition_id, PartitionStatus.PENDING, actor=actor,
                   event_type="partition_retry_scheduled", data={**data, "retry_after_s": round(retry_after, 3)},
                   guard={"lease_token": token}, updates=updates)
        return PartitionStatus.PENDING


def partition_release(partition_id: int, token: int, *, actor: Any, reason: str) -> None:
    """Hand a held partition back unfinished (budget spent, job paused); the attempt is given back."""
    # status=running: a reaper does not bump the token, so the token alone would let a stalled
    # holder move a partition reaped to failed back to pending.
    transition(Partition, partition_id, PartitionStatus.PENDING, actor=actor, event_type="partition_released",
               data={"reason": reason}, guard={"lease_token": token, "status": PartitionStatus.RUNNING},
               updates={"attempts": F("attempts") - 1, "available_at": Now()})


def partition_cancel(partition_id: int, token: int, *, actor: Any, reason: str) -> None:
    """Stop a held partition because its job was cancelled or failed."""
    transition(Partition, partition_id, PartitionStatus.CANCELLED, actor=actor, event_type="partition_cancelled",
               data={"reason": reason}, guard={"lease_token": token, "status": PartitionStatus.RUNNING})


def partitions_lease_lapsed(*, min_attempts: int = 0) -> list[int]:
    """Running partitions whose lease lapsed, claimed at least `min_attempts` times."""
    return list(Partition.objects.filter(pk__in=RawSQL(SQL_PARTITIONS_LEASE_LAPSED, []), attempts__gte=min_attempts)
                .values_list("pk", flat=True))


def partitions_reap_expired(*, actor: Any = "reaper") -> dict[str, int]:
    """Expired leases: back to pending (resume at checkpoint), or failed when out of attempts."""
    expired = Q(pk__in=RawSQL(SQL_PARTITIONS_LEASE_LAPSED, []))
    exhausted = transition_many(
        Partition, expired & Q(attempts__gte=F("max_attempts")), PartitionStatus.FAILED, actor=Actor.of(actor),
        event_type="partition_failed", data={"error": "lease expired on the last attempt"},
        updates={"last_error": "lease expired on the last attempt (worker crashed or stalled)"},
    )
    requeued = transition_many(
        Partition, expired, PartitionStatus.PENDING, actor=Actor.of(actor), event_type="partition_lease_expired",
        updates={"available_at": Now()},
    )
    return {"requeued": len(requeued), "failed": len(exhausted)}


def _job_step_claim(job_id: int, *, condition: str, target: str, event: str, worker_id: str,
                    lease_seconds: float) -> int | None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SQL_JOB_STEP_CLAIM.format(condition=condition), {
            "job_id": job_id, "target": target, "owner": worker_id, "lease": lease_seconds, "event": event,
        })
        row = cursor.fetchone()
    return row[0] if row else None


def job_plan_claim(job_id: int, *, worker_id: str, lease_seconds: float) -> int | None:
    """Take the plan step of a pending job (or of one whose planner died); return its step token."""
    return _job_step_claim(job_id, condition=_PLAN_CONDITION, target=JobStatus.PLANNING, event="planning_started",
                           worker_id=worker_id, lease_seconds=lease_seconds)


def job_finalize_claim(job_id: int, *, worker_id: str, lease_seconds: float) -> int | None:
    """Take the finalize step once every partition is terminal (or its finalizer died)."""
    return _job_step_claim(job_id, condition=_FINALIZE_CONDITION, target=JobStatus.FINALIZING,
                           event="finalizing_started", worker_id=worker_id, lease_seconds=lease_seconds)


def job_step_finish(job_id: int, token: int, target: str, *, actor: Any, event_type: str,
                    data: dict | None = None, updates: dict | None = None) -> Job:
    """End a singleton step with a status change fenced by its step token. Raises LeaseLost."""
    return transition(Job, job_id, target, actor=actor, event_type=event_type, data=data,
                      guard={"step_token": token}, updates={"step_expires_at": None, **(updates or {})})



# Schedules --------------------------------------------------------------------------------------------------

# The most overdue enabled schedule, locked; skipped when another process holds it. A process that locks a row
# another one has just fired re-checks the WHERE against the committed row (READ COMMITTED), so a fire is
# claimed once across every cluster. Returns the database clock too: fires are computed from it.
SQL_SCHEDULE_CLAIM_DUE = """
    SELECT s.id, statement_timestamp() FROM partitions_jobschedule s
    WHERE s.enabled AND s.next_run_at <= statement_timestamp() AND s.id <> ALL(%(skip)s::bigint[])
    ORDER BY s.next_run_at, s.id LIMIT 1 FOR UPDATE SKIP LOCKED
"""

# The database clock, for writes that are computed in Python (a schedule's next fire).
SQL_DB_NOW = "SELECT statement_timestamp()"


def schedule_claim_due(*, skip: list[int] | tuple[int, ...] = ()):
    """(the locked due schedule, the database's now), or None; call inside the transaction that fires it.
    `skip`: schedules this firer already failed to fire (never claimed again by it)."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_SCHEDULE_CLAIM_DUE, {"skip": list(skip)})
        row = cursor.fetchone()
    if row is None:
        return None
    return JobSchedule.objects.get(pk=row[0]), row[1]


def db_now():
    """The database clock (statement_timestamp())."""
    with connection.cursor() as cursor:
        cursor.execute(SQL_DB_NOW)
        return cursor.fetchone()[0]


# Row locks outside the partition lifecycle ---------------------------------------------------------------------
# Every other lock the engine takes is here too, each named once: operator commands that change a job or a
# schedule in place, a split of a partition, the notification outbox.

# Claim the due deliveries that head their (job, channel) queue, so each channel gets a job's notifications in
# order (a later one waits while an earlier one is retried). The claim is a lease: next_attempt_at moves
# %(lease)s s ahead, so a sender that dies mid-send leaves the delivery to be sent again (at least once).
SQL_DELIVERIES_CLAIM_DUE = """
    WITH heads AS (
        SELECT DISTINCT ON (job_id, channel) id FROM partitions_delivery
        WHERE status = 'pending' ORDER BY job_id, channel, id
    ), picked AS (
        SELECT d.id FROM partitions_delivery d JOIN heads h ON h.id = d.id
        WHERE d.next_attempt_at <= statement_timestamp() AND (%(job_id)s::bigint IS NULL OR d.job_id = %(job_id)s)
        ORDER BY d.id LIMIT %(limit)s
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE partitions_delivery d
    SET attempts = d.attempts + 1, next_attempt_at = statement_timestamp() + make_interval(secs => %(lease)s)
    FROM picked WHERE d.id = picked.id
    RETURNING d.id
"""


def deliveries_claim_due(job_id: int | None, *, limit: int, lease_seconds: float) -> list[int]:
    """Lease the due deliveries that head their (job, channel) queue; their ids."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SQL_DELIVERIES_CLAIM_DUE, {"job_id": job_id, "limit": limit, "lease": lease_seconds})
        return [row[0] for row in cursor.fetchall()]


def locked(queryset: QuerySet, *, no_key: bool = False) -> QuerySet:
    """`queryset`'s rows locked until the end of the current transaction (FOR UPDATE, or FOR NO KEY UPDATE,
    which does not block inserts of child rows): the engine's one way to take a row lock in the ORM."""
    return queryset.select_for_update(no_key=no_key)


def job_locked(job_id: int, *, no_key: bool = False) -> Job | None:
    """The job row, locked for an operator command that changes it in place (throttle, knob)."""
    return locked(Job.objects.filter(pk=job_id), no_key=no_key).first()


def partition_locked_for_split(partition_id: int, bounds_version: int) -> Partition | None:
    """An unfinished partition still at `bounds_version`, locked: its holder's next checkpoint waits for the
    split's commit, then sees the new version."""
    return locked(Partition.objects.filter(pk=partition_id, bounds_version=bounds_version,
                                           status__in=[PartitionStatus.RUNNING, PartitionStatus.PENDING])).first()
