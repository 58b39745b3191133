"""Job events become deliveries: one per notification and channel, each with a stable idempotency key, so the
relay can run any number of times, on any host, and never makes a delivery twice.

The relay reads events after a cursor. Event ids are not committed in id order, so the cursor only moves
past events older than `SETTLE_SECONDS`: a younger event is read again next time (its deliveries already
exist, and the unique key makes that a no-op), and an event committed late is still found.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models.functions import Now

from partitions.core.encoding import to_json
from partitions.core.events import NOTIFICATIONS, NotificationKind
from partitions.core.exceptions import JobTypeNotFound
from partitions.core.states import PartitionStatus
from partitions.engine import claiming
from partitions.jobtypes import registry
from partitions.models import Delivery, Job, JobEvent, Partition
from partitions.notify.config import Plan, plan_for

SETTLE_SECONDS = 30
BATCH = 1000


def _payload(event: JobEvent, job: Job, kind: str, step: str, key: str) -> dict:
    return to_json({
        "event": kind, "step": step or None, "idempotency_key": key, "at": event.created_at,
        "job": {"id": job.pk, "type": job.type_name, "status": job.status, "params": job.params,
                "max_parallel": job.max_parallel, "deadline": job.deadline},
        "data": event.data,
    })


def _deliveries(event: JobEvent, job: Job, plan: Plan) -> list[Delivery]:
    rows = []
    for kind, step in NOTIFICATIONS[event.type]:
        if kind not in plan.events:
            continue
        if kind == NotificationKind.PARTITIONS_FAILED:
            failed = Partition.objects.filter(job_id=job.pk, status=PartitionStatus.FAILED).count()
            if failed < plan.partitions_failed_threshold:
                continue
            scope = f"job-{job.pk}:partitions_failed"  # once per job, whichever failure crossed the line
        else:
            scope = f"event-{event.pk}:{kind}:{step}"
        for channel in plan.channels():
            key = f"{scope}:{channel}"
            rows.append(Delivery(job_id=job.pk, event_id=event.pk, kind=kind, step=step, channel=channel,
                                 idempotency_key=key, payload=_payload(event, job, kind, step, key)))
    return rows


def notifications_relay() -> dict[str, int]:
    """Turn the job events since the cursor into deliveries; the counts of events read and deliveries made."""
    with transaction.atomic():
        cursor = claiming.outbox_cursor_locked()
        events = list(JobEvent.objects.filter(id__gt=cursor.last_event_id, type__in=list(NOTIFICATIONS))
                      .order_by("id")[:BATCH])
        jobs = Job.objects.in_bulk({e.job_id for e in events})
        plans: dict[int, Plan] = {}
        rows: list[Delivery] = []
        for event in events:
            job = jobs[event.job_id]
            if job.pk not in plans:
                plans[job.pk] = plan_for(job, _job_type(job.type_name))
            rows += _deliveries(event, job, plans[job.pk])
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)  # the unique idempotency key: made once
        settled = JobEvent.objects.filter(id__gt=cursor.last_event_id, type__in=list(NOTIFICATIONS),
                                          created_at__lt=Now() - timedelta(seconds=SETTLE_SECONDS))
        if events:
            upto = settled.filter(id__lte=events[-1].pk).order_by("-id").values_list("id", flat=True).first()
            if len(events) == BATCH and upto is None:
                upto = events[-1].pk  # a burst of fresh events: move on rather than re-read the same batch
            if upto is not None:
                cursor.last_event_id = upto
                cursor.save(update_fields=["last_event_id"])
    return {"events": len(events), "deliveries_offered": len(rows)}


def _job_type(name: str):
    try:
        return registry.get(name)
    except JobTypeNotFound:  # a type removed since: the settings' channels still hear of its end
        return None
