"""The only code that changes a status.

`transition()` moves one row: it checks the transition table, runs one
conditional write guarded by the allowed source statuses (plus any extra
guard, such as a lease token), sets the timestamps that belong to the target
status, and writes the JobEvent, all in one transaction. `transition_many()`
does the same for a set of rows with one guarded write that returns them and one bulk insert.

It also holds the one writer of JobEvent rows: `event()` (one INSERT) and `events_insert()` (many rows, built by
`event_row()`, in one INSERT), whoever writes them (transitions, services, the worker, job types through
`partitions.event`); their types are `partitions.core.events.EventType`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Now

from partitions.core.encoding import dumps
from partitions.core.events import EventType
from partitions.core.exceptions import InvalidTransition, LeaseLost
from partitions.core.limits import ERROR_LINE, STORED_ERROR, STORED_TRACEBACK, clip
from partitions.core.stamps import CLEAR, KEEP_OR_NOW, NOW, stamps
from partitions.core.states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    PARTITION_TRANSITIONS,
    SUBJOB_TRANSITIONS,
    PartitionStatus,
    SubJobStatus,
    sources,
)
from partitions.engine.sql import queries
from partitions.models import Delivery, Job, JobEvent, Partition, SubJob

TABLES: dict[type[models.Model], dict[str, frozenset[str]]] = {
    Job: JOB_TRANSITIONS,
    Partition: PARTITION_TRANSITIONS,
    SubJob: SUBJOB_TRANSITIONS,
}


@dataclass(frozen=True)
class Actor:
    """Who caused a change: an operator (user) or a worker/system process (label)."""

    label: str
    user_id: int | None = None

    @classmethod
    def of(cls, who: Any) -> Actor:
        """Accept an Actor, a Django user, or a plain label such as a worker id."""
        if isinstance(who, Actor):
            return who
        if who is None:
            return SYSTEM
        if hasattr(who, "get_username"):
            return cls(label=f"user:{who.get_username()}", user_id=who.pk)
        return cls(label=str(who))


SYSTEM = Actor("system")


def timestamps_for(model: type[models.Model], target: str) -> dict[str, Any]:
    """Column updates that go with entering `target` (set together with the status): `stamps`' table, the
    same one the SQL registry's statements set."""
    render = {NOW: lambda c: Now(), CLEAR: lambda c: None, KEEP_OR_NOW: lambda c: Coalesce(F(c), Now())}
    return {column: render[how](column) for column, how in stamps(model._meta.model_name, target).items()}


def event_row(job_id: int, type: EventType, actor: Any, data: dict | None = None, *,
              partition_id: int | None = None, subjob_id: int | None = None) -> JobEvent:
    """One unsaved event of a job's timeline: `event` saves one, `events_insert` many."""
    who = Actor.of(actor)
    return JobEvent(job_id=job_id, partition_id=partition_id, subjob_id=subjob_id, type=type,
                    actor=who.label, actor_user_id=who.user_id, data=data or {})


def event(job_id: int, type: EventType, actor: Any, data: dict | None = None, *,
          partition_id: int | None = None, subjob_id: int | None = None) -> JobEvent:
    """Append one event to a job's timeline (one INSERT): every writer of a JobEvent row calls it, or
    `events_insert` for many."""
    row = event_row(job_id, type, actor, data, partition_id=partition_id, subjob_id=subjob_id)
    row.save(force_insert=True)
    return row


def events_insert(rows: list[JobEvent]) -> list[JobEvent]:
    """Append many events (built by `event_row`) in one INSERT: the hot paths' form (a batch's problem items, a
    bulk transition's rows)."""
    return JobEvent.objects.bulk_create(rows)


def _event_of(row: models.Model, type: EventType, actor: Actor, data: dict | None) -> JobEvent:
    """The event of a transition of `row` (a job, a partition or a sub-job)."""
    if isinstance(row, Job):
        return event_row(row.pk, type, actor, data)
    return event_row(row.job_id, type, actor, data, partition_id=row.pk if isinstance(row, Partition) else None,
                     subjob_id=row.pk if isinstance(row, SubJob) else None)


def transition(
    model: type[models.Model],
    pk: int,
    target: str,
    *,
    actor: Any,
    event_type: EventType,
    data: dict | None = None,
    guard: dict[str, Any] | None = None,
    updates: dict[str, Any] | None = None,
) -> models.Model:
    """Move one row to `target`; raise InvalidTransition (or LeaseLost when fenced by a token)."""
    actor = Actor.of(actor)
    allowed = sources(TABLES[model], target)
    with transaction.atomic():
        values = {"status": target, **timestamps_for(model, target), **(updates or {})}
        changed = model.objects.filter(pk=pk, status__in=allowed, **(guard or {})).update(**values)
        if not changed:
            current = model.objects.filter(pk=pk).values_list("status", flat=True).first()
            token = (guard or {}).get("lease_token", (guard or {}).get("step_token"))
            if token is not None:
                raise LeaseLost(pk, token)
            raise InvalidTransition(model.__name__, pk, current, target)
        row = model.objects.get(pk=pk)
        _event_of(row, event_type, actor, data).save(force_insert=True)
    return row


def transition_many(
    model: type[models.Model],
    where: Q,
    target: str,
    *,
    actor: Any,
    event_type: EventType | None,
    data: dict | None = None,
    updates: dict[str, Any] | None = None,
) -> list[models.Model]:
    """Move every row matching `where` that may reach `target`, each with an `event_type` event (None: none, the
    caller writes one for them all); return the moved rows."""
    actor = Actor.of(actor)
    allowed = sources(TABLES[model], target)
    with transaction.atomic():
        values = {"status": target, **timestamps_for(model, target), **(updates or {})}
        moved = _update_returning(model, where & Q(status__in=allowed), values)
        if moved and event_type is not None:
            events_insert([_event_of(row, event_type, actor, data) for row in moved])
    return moved


def _update_returning(model: type[models.Model], where: Q, values: dict[str, Any]) -> list[models.Model]:
    # One guarded write that returns its rows (Django's update() only returns a count): the rows
    # we get back are exactly the rows the guard let through, for their events.
    opts = model._meta
    fields = [(opts.get_field(name), None, value) for name, value in values.items()]
    returning = [opts.pk] + ([opts.get_field("job")] if model is not Job else [])
    try:
        rows = model.objects.filter(where)._update(fields, returning_fields=returning)
    except EmptyResultSet:  # `pk__in=[]`: Django knows no row can match and refuses to build the query
        return []
    if model is Job:
        return [Job(pk=pk) for (pk,) in rows]
    return [model(pk=pk, job_id=job_id) for pk, job_id in rows]


def subjobs_finish(outcomes: list[tuple[int, int, Any, str, str, str, str]], target: str) -> int:
    """Finish many sub-jobs in one statement: (id, duration_ms, result value or None, error line, traceback,
    error class, reason) each; a reason ("" for a success) also stamps the ledger's first and last seen.

    The batched form of transition_many for the runner's hot path (no event per row):
    one statement over one JSON text of rows (`subjobs_finish`), guarded by the transition table, instead of a
    write plus a per-row bulk_update. Returns how many rows moved.
    """
    if not outcomes:
        return 0
    rows = dumps([{"id": pk, "ms": ms, "result": result, "error": error, "tb": tb, "cls": cls, "reason": reason}
                  for pk, ms, result, error, tb, cls, reason in outcomes])
    with connection.cursor() as cursor:
        cursor.execute(queries["subjobs_finish"], {
            "target": target, "rows": rows, "from": _WORKER_SOURCES[target]})
        return cursor.rowcount


#: The guard of a worker's finish, per target, computed once: a worker finishes only the items it ran (pending
#: ones); the table's failed -> skipped edge is the operators'.
_WORKER_SOURCES = {target: [status for status in sources(SUBJOB_TRANSITIONS, target) if status == SubJobStatus.PENDING]
                   for target in SUBJOB_TRANSITIONS[SubJobStatus.PENDING]}


def subjobs_skip_failed(job_id: int, *, reason: str, note: str) -> int:
    """An operator's skip: the job's failed items of one reason to skipped with a note, and their partitions'
    counters (failed to skipped) in the same statement. Returns how many items moved."""
    with connection.cursor() as cursor:
        cursor.execute(queries["subjobs_skip_failed_of_reason"], {"job_id": job_id, "reason": reason, "note": note})
        return sum(n for _, n in cursor.fetchall())


def job_pending_work_cancel(job_id: int, *, actor: Any) -> None:
    """The job's pending partitions and sub-jobs, cancelled (its running ones stop at their next batch)."""
    transition_many(Partition, Q(job_id=job_id, status=PartitionStatus.PENDING), PartitionStatus.CANCELLED,
                    actor=actor, event_type=None)
    transition_many(SubJob, Q(job_id=job_id, status=SubJobStatus.PENDING), SubJobStatus.CANCELLED,
                    actor=actor, event_type=None)


# A worker's partition transitions that are not one fenced statement (claim, checkpoint and complete are, in
# `claiming.leases`): each is `transition()` guarded by the lease token, so a stale holder raises LeaseLost.

def partition_fail(partition_id: int, token: int, *, actor: Any, error: str, traceback: str = "",
                   retry_after: float, final: bool = False) -> str:
    """Give up this attempt: back to pending after `retry_after` s, or failed when out of attempts (cancelled
    when its job has ended meanwhile: nobody would claim it again)."""
    with transaction.atomic():
        current = (Partition.objects.filter(pk=partition_id, lease_token=token, status=PartitionStatus.RUNNING)
                   .select_related("job").only("attempts", "max_attempts", "job__status").first())
        if current is None:
            raise LeaseLost(partition_id, token)
        updates = {"last_error": clip(error, STORED_ERROR), "last_traceback": clip(traceback, STORED_TRACEBACK)}
        data = {"error": clip(error, ERROR_LINE), "attempt": current.attempts}
        if current.job.status in JOB_TERMINAL:
            transition(Partition, partition_id, PartitionStatus.CANCELLED, actor=actor,
                       event_type=EventType.PARTITION_CANCELLED,
                       data={**data, "reason": f"job {current.job.status}"},
                       guard={"lease_token": token}, updates=updates)
            return PartitionStatus.CANCELLED
        if final or current.attempts >= current.max_attempts:
            transition(Partition, partition_id, PartitionStatus.FAILED, actor=actor,
                       event_type=EventType.PARTITION_FAILED, data=data,
                       guard={"lease_token": token}, updates=updates)
            return PartitionStatus.FAILED
        updates["available_at"] = Now() + timedelta(seconds=retry_after)
        transition(Partition, partition_id, PartitionStatus.PENDING, actor=actor,
                   event_type=EventType.PARTITION_RETRY_SCHEDULED,
                   data={**data, "retry_after_s": round(retry_after, 3)},
                   guard={"lease_token": token}, updates=updates)
        return PartitionStatus.PENDING


def partition_release(partition_id: int, token: int, *, actor: Any, reason: str) -> None:
    """Hand a held partition back unfinished (budget spent, job paused); the attempt is given back."""
    # status=running: a reaper does not bump the token, so the token alone would let a stalled
    # holder move a partition reaped to failed back to pending.
    transition(Partition, partition_id, PartitionStatus.PENDING, actor=actor,
               event_type=EventType.PARTITION_RELEASED, data={"reason": reason},
               guard={"lease_token": token, "status": PartitionStatus.RUNNING},
               updates={"attempts": F("attempts") - 1, "available_at": Now()})


def partition_cancel(partition_id: int, token: int, *, actor: Any, reason: str) -> None:
    """Stop a held partition because its job was cancelled or failed."""
    transition(Partition, partition_id, PartitionStatus.CANCELLED, actor=actor,
               event_type=EventType.PARTITION_CANCELLED, data={"reason": reason},
               guard={"lease_token": token, "status": PartitionStatus.RUNNING})


def partitions_lease_lapsed(*, min_attempts: int = 0) -> list[int]:
    """Running partitions whose lease lapsed, claimed at least `min_attempts` times."""
    return list(Partition.objects.filter(pk__in=RawSQL(queries["partitions_lease_lapsed"], []),
                                         attempts__gte=min_attempts).values_list("pk", flat=True))


def partitions_reap_expired(*, actor: Any = "reaper") -> dict[str, int]:
    """Expired leases: back to pending (resume at checkpoint), or failed when out of attempts."""
    expired = Q(pk__in=RawSQL(queries["partitions_lease_lapsed"], []))
    exhausted = transition_many(
        Partition, expired & Q(attempts__gte=F("max_attempts")), PartitionStatus.FAILED, actor=Actor.of(actor),
        event_type=EventType.PARTITION_FAILED, data={"error": "lease expired on the last attempt"},
        updates={"last_error": "lease expired on the last attempt (worker crashed or stalled)"},
    )
    requeued = transition_many(
        Partition, expired, PartitionStatus.PENDING, actor=Actor.of(actor),
        event_type=EventType.PARTITION_LEASE_EXPIRED, updates={"available_at": Now()},
    )
    return {"requeued": len(requeued), "failed": len(exhausted)}


def delivery_finish(delivery_id: int, *, error: str | None) -> bool:
    """A pending notification delivery ends: sent (`error` None) or given up as failed with `error`.
    Only a pending one moves (a delivery ends once); False when it had already ended."""
    if error is None:
        values = {"status": Delivery.Status.SENT, "sent_at": Now(), "last_error": ""}
    else:
        values = {"status": Delivery.Status.FAILED, "last_error": error}
    return bool(Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING).update(**values))
