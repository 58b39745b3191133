"""The singleton steps of a job (plan, finalize): the job row is the lease, fenced by its step token."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from partitions.core.events import EventType
from partitions.core.states import JobStatus
from partitions.engine.lifecycle import transition
from partitions.engine.sql import queries
from partitions.models import Job


def _job_step_claim(statement: str, job_id: int, *, target: str, event: EventType, worker_id: str,
                    lease_seconds: float) -> int | None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries[statement], {
            "job_id": job_id, "target": target, "owner": worker_id, "lease": lease_seconds, "event": event,
        })
        row = cursor.fetchone()
    return row[0] if row else None


def job_plan_claim(job_id: int, *, worker_id: str, lease_seconds: float) -> int | None:
    """Take the plan step of a pending job (or of one whose planner died); return its step token."""
    return _job_step_claim("job_plan_claim", job_id, target=JobStatus.PLANNING, event=EventType.PLANNING_STARTED,
                           worker_id=worker_id, lease_seconds=lease_seconds)


def job_finalize_claim(job_id: int, *, worker_id: str, lease_seconds: float) -> int | None:
    """Take the finalize step once every partition is terminal (or its finalizer died)."""
    return _job_step_claim("job_finalize_claim", job_id, target=JobStatus.FINALIZING,
                           event=EventType.FINALIZING_STARTED, worker_id=worker_id, lease_seconds=lease_seconds)


def job_step_finish(job_id: int, token: int, target: str, *, actor: Any, event_type: EventType,
                    data: dict | None = None, updates: dict | None = None) -> Job:
    """End a singleton step with a status change fenced by its step token. Raises LeaseLost."""
    return transition(Job, job_id, target, actor=actor, event_type=event_type, data=data,
                      guard={"step_token": token}, updates={"step_expires_at": None, **(updates or {})})
