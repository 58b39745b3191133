"""Send what is due from the outbox: each delivery at least once, in order per job and channel, with backoff;
a channel that keeps failing is given up after `MAX_ATTEMPTS` and never blocks or fails a job."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db.models.functions import Now

from partitions import conf
from partitions.core.backoff import Backoff
from partitions.core.exceptions import JobTypeNotFound, error_line
from partitions.engine import claiming, tracing
from partitions.engine.lifecycle import delivery_finish
from partitions.jobtypes import registry
from partitions.models import Delivery
from partitions.notify import channels
from partitions.notify.config import Plan, plan_for

log = logging.getLogger(__name__)

#: Seconds a claimed delivery is held by its sender before another may send it again.
SEND_LEASE_SECONDS = 60
#: Deliveries one pass claims.
PASS_SIZE = 50
#: The longest a delivery waits between two attempts (its backoff starts at PARTITIONS_NOTIFY_BACKOFF seconds).
BACKOFF_CAP_SECONDS = 3600.0


def _claim(job_id: int | None) -> list[Delivery]:
    ids = claiming.deliveries_claim_due(job_id, limit=PASS_SIZE, lease_seconds=SEND_LEASE_SECONDS)
    return list(Delivery.objects.filter(pk__in=ids).select_related("job").order_by("id"))


def _plan(delivery: Delivery, plans: dict[int, Plan]) -> Plan:
    if delivery.job_id not in plans:
        try:
            job_type = registry.get(delivery.job.type_name)
        except JobTypeNotFound:
            job_type = None
        plans[delivery.job_id] = plan_for(delivery.job, job_type)
    return plans[delivery.job_id]


def _record(delivery: Delivery, error: str | None) -> None:
    if error is None:
        delivery_finish(delivery.pk, error=None)
        return
    if delivery.attempts >= conf.get("NOTIFY_MAX_ATTEMPTS"):
        log.warning("giving up delivery %s (%s) after %s attempts: %s", delivery.pk, delivery.channel,
                    delivery.attempts, error)
        delivery_finish(delivery.pk, error=error)
        return
    backoff = Backoff(base=conf.get("NOTIFY_BACKOFF"), cap=BACKOFF_CAP_SECONDS)
    retry_at = Now() + timedelta(seconds=backoff.delay(delivery.attempts))
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=retry_at, last_error=error)


def deliveries_send(*, job_id: int | None = None, budget_seconds: float = 20.0) -> dict[str, int]:
    """Send due deliveries (of one job, or all) until none is due or the budget is spent; counts by outcome."""
    counts = {"sent": 0, "retry": 0}
    plans: dict[int, Plan] = {}
    ends = time.monotonic() + budget_seconds
    while time.monotonic() < ends:
        batch = _claim(job_id)
        if not batch:
            break
        for delivery in batch:
            with tracing.span("partitions.notify.deliver", {
                "job.id": delivery.job_id, "delivery.id": delivery.pk, "delivery.kind": delivery.kind,
                "delivery.step": delivery.step, "delivery.channel": delivery.channel,
                "delivery.attempt": delivery.attempts}, parent=tracing.job_parent(delivery.job_id)):
                try:
                    channels.send(delivery, _plan(delivery, plans))
                    error = None
                except Exception as exc:  # a receiver's failure is the delivery's, never the job's
                    error = error_line(exc)
                tracing.annotate({"delivery.error": error})
                _record(delivery, error)
            counts["sent" if error is None else "retry"] += 1
    return counts


def deliveries_due() -> bool:
    """Whether some delivery waits to be sent now (what tick checks before queueing a sender)."""
    return Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=Now()).exists()
