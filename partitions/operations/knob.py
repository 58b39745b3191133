"""The time/cost knob on a live job: change its `max_parallel` (and its deadline) while it runs or is paused.

Raising it brings idle workers in at once (drains are topped up after the commit); lowering it stops new
claims at once, and the partitions above the cap hand themselves back at their next batch boundary (within
a few seconds, see `partitions.worker.pulse`), keeping their checkpoints, so no batch is lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from partitions.core import validation
from partitions.core.events import EventType
from partitions.core.exceptions import InvalidParams, JobNotFound
from partitions.engine import claiming, dispatch
from partitions.engine.lifecycle import Actor, event
from partitions.models import Job
from partitions.permissions import Action, require

NOTHING_TO_CHANGE = "Nothing to change: give max_parallel or a deadline."

#: "Leave this setting as it is" (None means "no deadline").
KEEP = validation.UNSET


def job_set(job_id: int, *, actor: Any, max_parallel: int | Any = KEEP,
            deadline: datetime | Any | None = KEEP) -> Job:
    """Change the knob of a job that has not ended; one `job_settings_changed` event names the user and each
    change as [before, after]. Raises InvalidParams (nothing written), InvalidTransition, or NotPermitted (a user
    actor without the right)."""
    if max_parallel is KEEP and deadline is KEEP:
        raise InvalidParams(validation.RUN_OPTIONS, {"__all__": [NOTHING_TO_CHANGE]})
    with transaction.atomic():
        job = claiming.job_locked(job_id, no_key=True)
        if job is None:
            raise JobNotFound(job_id)
        require(actor, Action.KNOB, job)
        options = validation.run_options(
            max_parallel=job.max_parallel if max_parallel is KEEP else max_parallel,
            deadline=None if deadline is KEEP else deadline)
        changes: dict[str, list] = {}
        if max_parallel is not KEEP and options.max_parallel != job.max_parallel:
            changes["max_parallel"] = [job.max_parallel, options.max_parallel]
            job.max_parallel = options.max_parallel
        if deadline is not KEEP and options.deadline != job.deadline:
            changes["deadline"] = [_iso(job.deadline), _iso(options.deadline)]
            job.deadline = options.deadline
        if changes:
            job.save(update_fields=[name for name in ("max_parallel", "deadline") if name in changes])
            event(job.pk, EventType.JOB_SETTINGS_CHANGED, Actor.of(actor), changes)
            transaction.on_commit(dispatch.work_available)
    return job


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
