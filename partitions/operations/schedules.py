"""Recurring runs: the operator commands on schedules (`schedule_<verb>`) and the fire duty `tick` runs.

A schedule is our own row (`JobSchedule`), not a django-q2 Schedule: its job type, params and run options are
validated by the engine when it is created and again at every fire, its fires are claimed with a row lock
and the database clock (`claiming.schedule_claim_due`), and its history (`ScheduleEvent`) is the engine's.
django-q2 only drives `tick`, which calls `schedules_fire_due`.

What a fire does, in the one transaction that holds the schedule's row lock:
- the last run of the schedule is still active (its dedupe key): nothing starts, `fire_skipped` records it
  (consecutive skips of the same run are one row with a `count`, so a frequent cadence does not flood the
  history);
- the fire is late by more than PARTITIONS_SCHEDULE_MISFIRE_GRACE_SECONDS (an outage): the missed fires are
  counted, never replayed one by one; with PARTITIONS_SCHEDULE_CATCH_UP one run makes up for all of them;
- the params (or the run options) no longer validate, or the job type is gone: the schedule is paused with
  the reason (`schedule_auto_paused`) instead of failing at every fire;
- else one job starts (`fire_started`), and the next fire is computed after the database's now.

A fire that raises anything else (a row stored behind the forms with a cadence the parser rejects, a bug) is
rolled back alone: the schedule is paused with the reason, `fire_failed` records it, the operators are told,
and the duty goes on to the next schedule; one poisoned row never stops the others.

Who may do what is `partitions.permissions`' rules: creating a schedule needs `partitions.add_jobschedule` (and
`start_job`: a schedule starts jobs), deleting it `delete_jobschedule`, pausing and resuming it (steering, like a
job's pause) `operate_job`, a manual fire `start_job`. The services require it of a user actor (the admin passes
`request.user`); the CLI and the schedules act as trusted labels.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from partitions import conf
from partitions.core import validation
from partitions.core.events import FIRE_OUTCOMES, ScheduleEventType
from partitions.core.exceptions import (
    DuplicateJob,
    InvalidParams,
    InvalidSchedule,
    JobTypeNotFound,
    ScheduleNameTaken,
    ScheduleNotFound,
    error_line,
)
from partitions.core.humanize import plural
from partitions.engine import claiming
from partitions.engine.lifecycle import Actor
from partitions.jobtypes import registry
from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.notify.config import notify_choice
from partitions.notify.operators import operators_notify
from partitions.operations import cadence as cadences
from partitions.operations import services
from partitions.operations.cadence import Cadence
from partitions.permissions import Action, require

log = logging.getLogger(__name__)

NAME_MAX_LENGTH = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: What a manual fire answers when the schedule's last run is still active.
RUN_ACTIVE = "a run is active"


#: Schedule names a mistyped one is compared with ("did you mean …").
SUGGEST_FROM = 1_000


def cadence_of(schedule: JobSchedule) -> Cadence:
    return Cadence(kind=schedule.kind, cron=schedule.cron, every=schedule.every, tz=schedule.timezone,
                   anchor=schedule.anchor)


def schedule_event(schedule: JobSchedule, type_: ScheduleEventType, actor: Any, *, job: Job | None = None,
                   scheduled_for: datetime | None = None, **data: Any) -> ScheduleEvent:
    """Append one event to a schedule's history: the one writer of ScheduleEvent rows."""
    who = Actor.of(actor)
    return ScheduleEvent.objects.create(schedule=schedule, schedule_name=schedule.name, type=type_, job=job,
                                        scheduled_for=scheduled_for, actor=who.label, actor_user_id=who.user_id,
                                        data=data)


@dataclass(frozen=True)
class FireResult:
    """What one fire did: `outcome` is the ScheduleEvent type it wrote."""

    outcome: ScheduleEventType  # one of FIRE_OUTCOMES
    job: Job | None = None
    detail: str = ""


# Creating ----------------------------------------------------------------------------------------------


def schedule_check(*, name: str, type_name: str, params: dict[str, Any] | None, cadence: Cadence,
                   max_parallel: int = 0, priority: int = 0, deadline_offset: timedelta | None = None,
                   rate_limit: Any = validation.UNSET, pause_ms: Any = validation.UNSET,
                   notify: list[str] | None = None) -> dict[str, Any]:
    """Validate everything a schedule holds; the row's fields, or InvalidSchedule / InvalidParams /
    JobTypeNotFound (the admin form and the CLI call it before showing anything)."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not (len(name) <= NAME_MAX_LENGTH and NAME_PATTERN.fullmatch(name)):
        errors["name"] = [f"Use 1 to {NAME_MAX_LENGTH} letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit."]
    errors.update(cadences.cadence_errors(cadence))
    if deadline_offset is not None and not (
            cadences.DEADLINE_OFFSET_MIN <= deadline_offset <= cadences.DEADLINE_OFFSET_MAX):
        errors["deadline"] = ["Enter a deadline after the fire such as +90m, +2h or +1d (at most a year)."]
    if errors:
        raise InvalidSchedule(errors)
    job_type = registry.get(type_name)
    cleaned = job_type.validate_params(params)
    throttle = {k: v for k, v in {"rate_limit": rate_limit, "pause_ms": pause_ms}.items() if v is not validation.UNSET}
    validation.run_options(max_parallel=max_parallel, priority=priority,
                           **{"rate_limit": job_type.rate_limit, "pause_ms": job_type.pause_ms, **throttle})
    notify_choice(notify or [])
    return {"name": name, "type_name": type_name, "params": cleaned, "max_parallel": max_parallel,
            "priority": priority, "deadline_offset": deadline_offset, "throttle": throttle,
            "notify": list(notify) if notify else None, "kind": cadence.kind, "cron": " ".join(cadence.cron.split()),
            "every": cadence.every, "timezone": cadence.tz}


def schedule_create(*, actor: Any, cadence: Cadence, start_at: datetime | None = None,
                    **fields: Any) -> JobSchedule:
    """Validate and create an enabled schedule; its first fire is the cadence's next after now (or `start_at`
    for interval and monthly cadences, which then repeat from it). Nothing is written on any error."""
    require(actor, Action.SCHEDULE_CREATE)
    now = claiming.db_now()
    if start_at is not None:
        start_at = validation.start_time(start_at, now=now)
        if start_at is None:
            raise InvalidSchedule({"start_at": [f"Enter a valid date-time within {validation.START_HORIZON.days} "
                                                "days of now (UTC offsets from -15:59 to +15:59)."]})
    row = schedule_check(cadence=cadence, **fields)
    who = Actor.of(actor)
    anchor = None if cadence.kind == cadences.CRON else (start_at or now)
    first = cadences.next_fire(Cadence(**{**cadence.__dict__, "anchor": anchor}),
                               now if start_at is None or start_at <= now else start_at - timedelta(microseconds=1))
    try:
        with transaction.atomic():
            schedule = JobSchedule.objects.create(**row, anchor=anchor, next_run_at=first, created_by_id=who.user_id)
            schedule_event(schedule, ScheduleEventType.SCHEDULE_CREATED, who, scheduled_for=first,
                           cadence=cadence_of(schedule).describe(), params=row["params"])
    except IntegrityError as exc:
        raise ScheduleNameTaken(row["name"]) from exc
    return schedule


# Operator commands ---------------------------------------------------------------------------------------


def schedule_get(name_or_id: str | int, *, lock: bool = False) -> JobSchedule:
    by_id = isinstance(name_or_id, int)
    if lock:
        found = claiming.schedule_locked(schedule_id=name_or_id if by_id else None,
                                         name=None if by_id else str(name_or_id))
    else:
        found = JobSchedule.objects.filter(**{"pk": name_or_id} if by_id else {"name": str(name_or_id)}).first()
    if found is None:
        known = [] if by_id else JobSchedule.objects.values_list("name", flat=True)[:SUGGEST_FROM]
        raise ScheduleNotFound(name_or_id, known)
    return found


def schedule_pause(name_or_id: str | int, *, actor: Any, reason: str = "") -> JobSchedule:
    """No more fires until resumed (a running job is not touched)."""
    require(actor, Action.SCHEDULE_PAUSE)
    reason = validation.reason_text(reason)
    with transaction.atomic():
        schedule = schedule_get(name_or_id, lock=True)
        if schedule.enabled:
            _pause(schedule, reason or f"paused by {Actor.of(actor).label}")
            schedule_event(schedule, ScheduleEventType.SCHEDULE_PAUSED, actor, reason=schedule.paused_reason)
    return schedule


def schedule_resume(name_or_id: str | int, *, actor: Any) -> JobSchedule:
    """Fires again from the next one after now (fires missed while paused are not made up). The params are
    checked first, and the cadence: a schedule paused because they stopped validating stays paused until they do."""
    require(actor, Action.SCHEDULE_RESUME)
    with transaction.atomic():
        schedule = schedule_get(name_or_id, lock=True)
        if not schedule.enabled:
            if errors := cadences.cadence_errors(cadence_of(schedule)):
                raise InvalidSchedule(errors)
            registry.get(schedule.type_name).validate_params(schedule.params)
            schedule.enabled, schedule.paused_reason = True, ""
            schedule.next_run_at = cadences.next_fire(cadence_of(schedule), claiming.db_now())
            schedule.save(update_fields=["enabled", "paused_reason", "next_run_at"])
            schedule_event(schedule, ScheduleEventType.SCHEDULE_RESUMED, actor, scheduled_for=schedule.next_run_at)
    return schedule


def schedule_delete(name_or_id: str | int, *, actor: Any) -> str:
    """Delete a schedule (its jobs and its history stay); returns its name."""
    require(actor, Action.SCHEDULE_DELETE)
    with transaction.atomic():
        schedule = schedule_get(name_or_id, lock=True)
        schedule_event(schedule, ScheduleEventType.SCHEDULE_DELETED, actor)
        name = schedule.name
        schedule.delete()
    return name


def schedule_run_now(name_or_id: str | int, *, actor: Any) -> FireResult:
    """One fire now, by an operator (even while paused); the cadence's next fire does not move. While the last
    run is active (another operator's fire a moment ago included) nothing starts: `fire_skipped`."""
    require(actor, Action.SCHEDULE_RUN)
    with transaction.atomic():
        schedule = schedule_get(name_or_id, lock=True)
        now = claiming.db_now()
        result = _fire(schedule, now=now, scheduled_for=now, actor=actor)
        schedule.last_run_at = now
        schedule.save(update_fields=["last_run_at", "last_job", "enabled", "paused_reason", "next_run_at"])
    return result


# Firing (tick) --------------------------------------------------------------------------------------------


#: How long one run of the fire duty goes on firing (then the rest waits for the next run, or another firer).
FIRE_BUDGET_SECONDS = 5.0


def schedules_fire_due(*, limit: int | None = None, budget_seconds: float = FIRE_BUDGET_SECONDS) -> dict[str, int]:
    """Fire every due schedule once, each in its own short transaction, for at most `budget_seconds` (and
    `limit` fires); counts by outcome. Several firers (every cluster's tick) share the due rows: each claims
    with SKIP LOCKED.

    The one entry point of the schedule duty (tick, and whatever wakes it). A fire that fails is rolled back
    alone and handled by `schedule_fire_failed`; the next due schedule fires regardless.
    """
    counts = {outcome.value: 0 for outcome in FIRE_OUTCOMES}
    failed: list[int] = []  # not claimed again by this run, whatever happened to them
    ends = time.monotonic() + budget_seconds
    for _ in itertools.count() if limit is None else range(limit):
        if time.monotonic() >= ends:
            break
        claimed_id = None
        try:
            with transaction.atomic():
                claimed = claiming.schedule_claim_due(skip=failed)
                if claimed is None:
                    break
                schedule, now = claimed
                claimed_id = schedule.pk
                counts[schedule_fire_claimed(schedule, now=now).outcome] += 1
        except Exception as exc:
            if claimed_id is None:
                raise  # the claim itself failed (the database): the duty's failure, logged by tick
            failed.append(claimed_id)
            counts[ScheduleEventType.FIRE_FAILED] += 1
            schedule_fire_failed(claimed_id, exc)
    return counts


def schedule_fire_failed(schedule_id: int, exc: BaseException) -> None:
    """A fire raised: pause the schedule with the reason, record `fire_failed`, tell the operators."""
    log.error("schedule %s: fire failed", schedule_id, exc_info=exc)
    try:
        with transaction.atomic():
            schedule = claiming.schedule_locked(schedule_id=schedule_id)
            if schedule is None:
                return
            reason = f"paused: its fire failed ({error_line(exc)})"
            scheduled_for = schedule.next_run_at
            _pause(schedule, reason)
            schedule_event(schedule, ScheduleEventType.FIRE_FAILED, f"schedule:{schedule.name}",
                           scheduled_for=scheduled_for, reason=reason, error=error_line(exc))
            operators_notify(f"Schedule {schedule.name} paused: its fire failed",
                             f"{reason}\nResume it once the cause is fixed (manage.py jobs schedule-resume "
                             f"{schedule.name}, or the admin's schedule page).")
    except Exception:  # the pause failed too: logged; this run of the duty does not claim it again
        log.exception("schedule %s: could not pause it after its fire failed", schedule_id)


def schedule_fire_claimed(schedule: JobSchedule, *, now: datetime) -> FireResult:
    """Fire a due schedule whose row this transaction holds, then move it to its next fire after `now`."""
    scheduled_for = schedule.next_run_at
    cadence = cadence_of(schedule)
    if errors := cadences.cadence_errors(cadence):  # a row written behind the forms
        raise InvalidSchedule(errors)
    missed = cadences.fires_between(cadence, scheduled_for, now)  # fires after this one that also passed
    late = (now - scheduled_for).total_seconds() > conf.get("SCHEDULE_MISFIRE_GRACE_SECONDS")
    actor = f"schedule:{schedule.name}"
    if late and not conf.get("SCHEDULE_CATCH_UP"):
        schedule_event(schedule, ScheduleEventType.FIRE_MISSED, actor, scheduled_for=scheduled_for, missed=missed + 1,
                       late_seconds=round((now - scheduled_for).total_seconds()), caught_up=False)
        result = FireResult(ScheduleEventType.FIRE_MISSED, detail=f"{plural(missed + 1, 'missed fire')} not replayed")
    else:
        if late:
            schedule_event(schedule, ScheduleEventType.FIRE_MISSED, actor, scheduled_for=scheduled_for,
                           missed=missed + 1, late_seconds=round((now - scheduled_for).total_seconds()), caught_up=True)
        result = _fire(schedule, now=now, scheduled_for=scheduled_for, actor=actor)
    schedule.last_run_at = now
    if schedule.enabled:
        schedule.next_run_at = cadences.next_fire(cadence, now)
    schedule.save(update_fields=["last_run_at", "last_job", "enabled", "paused_reason", "next_run_at"])
    return result


def _fire(schedule: JobSchedule, *, now: datetime, scheduled_for: datetime, actor: Any) -> FireResult:
    """Start the schedule's job (validated again), or record why not; the caller saves the row."""
    deadline = now + schedule.deadline_offset if schedule.deadline_offset else None
    try:
        # The deadline is the fire's (database) time plus an offset checked when the schedule was made: this
        # process's clock, which may run ahead of the database's, has no say in whether it is still to come.
        job, created = services.job_start(
            schedule.type_name, schedule.params, actor=actor, max_parallel=schedule.max_parallel,
            priority=schedule.priority, deadline=deadline, allow_past_deadline=True,
            dedupe_key=schedule.dedupe_key, notify=schedule.notify, **schedule.throttle)
    except (InvalidParams, JobTypeNotFound) as exc:
        reason = f"paused at its fire of {scheduled_for:%Y-%m-%d %H:%M} UTC: {error_line(exc)}"
        _pause(schedule, reason)
        schedule_event(schedule, ScheduleEventType.SCHEDULE_AUTO_PAUSED, actor, scheduled_for=scheduled_for,
                       reason=reason)
        return FireResult(ScheduleEventType.SCHEDULE_AUTO_PAUSED, detail=reason)
    except DuplicateJob:  # the active run ended between the conflict and the look-up: nothing to start either
        job, created = None, False
    if not created:
        detail = f"{RUN_ACTIVE}: job #{job.pk} is still {job.status}" if job else RUN_ACTIVE
        _skipped(schedule, actor, job=job, scheduled_for=scheduled_for, detail=detail)
        return FireResult(ScheduleEventType.FIRE_SKIPPED, job=job, detail=detail)
    schedule.last_job = job
    schedule_event(schedule, ScheduleEventType.FIRE_STARTED, actor, job=job, scheduled_for=scheduled_for)
    return FireResult(ScheduleEventType.FIRE_STARTED, job=job)


def _skipped(schedule: JobSchedule, actor: Any, *, job: Job | None, scheduled_for: datetime, detail: str) -> None:
    """Record a skipped fire; one skip after another of the same run only counts up the last row (the schedule's
    row lock, held by the caller, orders them)."""
    last = ScheduleEvent.objects.filter(schedule=schedule).order_by("-id").first()
    if last is not None and last.type == ScheduleEventType.FIRE_SKIPPED and last.job_id == (job.pk if job else None):
        count = int(last.data.get("count", 1)) + 1
        last.data = {**last.data, "count": count, "last_scheduled_for": scheduled_for.isoformat(),
                     "reason": f"{detail}; {count} fires skipped"}
        last.save(update_fields=["data"])
        return
    schedule_event(schedule, ScheduleEventType.FIRE_SKIPPED, actor, job=job, scheduled_for=scheduled_for,
                   reason=detail, count=1)


def _pause(schedule: JobSchedule, reason: str) -> None:
    schedule.enabled, schedule.paused_reason, schedule.next_run_at = False, reason, None
    schedule.save(update_fields=["enabled", "paused_reason", "next_run_at"])
