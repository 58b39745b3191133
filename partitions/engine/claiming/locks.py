"""Every row and advisory lock the engine takes outside a partition claim, each a named registry statement
(`partitions/engine/sql/locks.sql`): operator commands that change a job or a schedule in place, a split, the
schedule firer, the notification outbox, the standby drain."""

from __future__ import annotations

from django.db import connection, transaction

from partitions.engine.sql import queries
from partitions.models import Job, JobSchedule, OutboxCursor, Partition


def _locked(model, statement: str, params: dict):
    return next(iter(model.objects.raw(queries[statement], params)), None)


def job_locked(job_id: int, *, no_key: bool = False) -> Job | None:
    """The job row, locked for an operator command that changes it in place (throttle, knob). `no_key`: the weaker
    row lock (`job_lock_no_key`), which does not block inserts of child rows."""
    return _locked(Job, "job_lock_no_key" if no_key else "job_lock", {"job_id": job_id})


def partition_locked_for_split(partition_id: int, bounds_version: int) -> Partition | None:
    """An unfinished partition still at `bounds_version`, locked: its holder's next checkpoint waits for the
    split's commit, then sees the new version."""
    return _locked(Partition, "partition_lock_for_split", {"id": partition_id, "bounds_version": bounds_version})


def schedule_locked(*, schedule_id: int | None = None, name: str | None = None) -> JobSchedule | None:
    """One schedule by id or by name, locked for a change in place."""
    return _locked(JobSchedule, "schedule_lock", {"id": schedule_id, "name": name})


def outbox_cursor_locked() -> OutboxCursor:
    """The relay's cursor row (created at 0 when missing), locked: one relay pass at a time."""
    with connection.cursor() as cursor:
        cursor.execute(queries["outbox_cursor_create"])
    return _locked(OutboxCursor, "outbox_cursor_lock", {})


def schedule_claim_due(*, skip: list[int] | tuple[int, ...] = ()):
    """(the locked due schedule, the database's now), or None; call inside the transaction that fires it.
    `skip`: schedules this firer already failed to fire (never claimed again by it)."""
    with connection.cursor() as cursor:
        cursor.execute(queries["schedule_claim_due"], {"skip": list(skip)})
        row = cursor.fetchone()
    if row is None:
        return None
    return JobSchedule.objects.get(pk=row[0]), row[1]


def deliveries_claim_due(job_id: int | None, *, limit: int, lease_seconds: float) -> list[int]:
    """Lease the due deliveries that head their (job, channel) queue; their ids."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries["deliveries_claim_due"], {"job_id": job_id, "limit": limit, "lease": lease_seconds})
        return [row[0] for row in cursor.fetchall()]


def standby_acquire() -> bool:
    """Become the fleet's one standby drain (held until standby_release or until this connection closes)."""
    with connection.cursor() as cursor:
        cursor.execute(queries["standby_try_lock"])
        return bool(cursor.fetchone()[0])


def standby_release() -> None:
    with connection.cursor() as cursor:
        cursor.execute(queries["standby_unlock"])
