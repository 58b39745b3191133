"""Operator commands: what the admin and the CLI call to start and steer jobs, named `<entity>_<verb>`.

Each command asks `permissions.require` for its action: a user actor (the admin passes `request.user`) needs
the action's right, a trusted label (the CLI, a schedule) is let through, and the status rules apply to both.

The worker-side steps (plan, finalize, the circuit breaker) are in `partitions.worker.steps`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.db.models.functions import Now

from partitions.core import validation
from partitions.core.events import EventType
from partitions.core.exceptions import (
    DuplicateJob,
    InvalidParams,
    JobNotPlannable,
    PartitionsError,
    error_line,
)
from partitions.core.states import (
    JOB_REOPENABLE,
    JOB_TERMINAL,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
)
from partitions.core.validation import UNSET
from partitions.engine import claiming, dispatch, throttling, tracing
from partitions.engine.lifecycle import (
    Actor,
    event,
    job_pending_work_cancel,
    subjobs_skip_failed,
    transition,
    transition_many,
)
from partitions.jobtypes import registry
from partitions.jobtypes.splits import PartitionPlan, Split, check_splits, plan_splits
from partitions.models import Job, Partition, SubJob
from partitions.notify.config import notify_choice
from partitions.permissions import Action, require
from partitions.reads import ledger
from partitions.reads.pages import job_get
from partitions.reads.progress import job_progress

log = logging.getLogger(__name__)


#: Tries of a dedupe-keyed start whose conflicting run keeps ending under it (a very short run, started again).
DEDUPE_ATTEMPTS = 3


def job_start(type_name: str, params: dict[str, Any] | None = None, *, actor: Any, max_parallel: int = 0,
              priority: int = 0, deadline: datetime | None = None, dedupe_key: str | None = None,
              allow_past_deadline: bool = False, rate_limit: float | Any | None = UNSET,
              pause_ms: int | Any = UNSET, notify: list[str] | None = None) -> tuple[Job, bool]:
    """Validate and create a pending job; with a dedupe key, return the active job instead if one exists.

    The throttle (rate_limit, pause_ms) defaults to the job type's. `notify` is the run's own channels
    (`email:ADDRESS`, `webhook:NAME`, `none`); None: the defaults. Raises InvalidParams for bad params or
    run options, JobNotPlannable when its split fails with these params (nothing is written then): a job is
    created only if it can be planned, whoever starts it (admin, CLI, schedule, re-run). A user actor needs
    the right to start jobs (NotPermitted), as every operator command here needs its action's right.
    """
    require(actor, Action.START)
    job_type = registry.get(type_name)
    cleaned = job_type.validate_params(params)
    _plan_check(type_name, cleaned)
    options = validation.run_options(
        max_parallel=max_parallel, priority=priority, deadline=deadline, dedupe_key=dedupe_key,
        allow_past_deadline=allow_past_deadline,
        rate_limit=job_type.rate_limit if rate_limit is UNSET else rate_limit,
        pause_ms=job_type.pause_ms if pause_ms is UNSET else pause_ms)
    channels = notify_choice(notify or [])
    actor = Actor.of(actor)
    with tracing.span("partitions.job.start", {"job.type": type_name, "actor": actor.label}):
        return _job_create(type_name, cleaned, options, channels, actor)


def _job_create(type_name: str, cleaned: dict[str, Any], options, channels, actor: Actor) -> tuple[Job, bool]:
    """The job row and its `job_created` event (carrying the trace context, for the workers' spans)."""
    trace = tracing.carrier()
    for _ in range(DEDUPE_ATTEMPTS):
        try:
            with transaction.atomic():
                job = Job.objects.create(type_name=type_name, params=cleaned, max_parallel=options.max_parallel,
                                         priority=options.priority, deadline=options.deadline,
                                         dedupe_key=options.dedupe_key, created_by_id=actor.user_id,
                                         rate_limit=options.rate_limit, pause_ms=options.pause_ms, notify=channels)
                event(job.pk, EventType.JOB_CREATED, actor, {
                    "params": cleaned, "max_parallel": options.max_parallel, **_throttle_data(job),
                    **({"trace": trace} if trace else {})})
        except IntegrityError:
            existing = (Job.objects.filter(dedupe_key=options.dedupe_key)
                        .exclude(status__in=sorted(JOB_TERMINAL)).first())
            if existing is not None:
                return existing, False
            continue  # the active run ended between the conflict and the look-up: the key is free again
        transaction.on_commit(lambda pk=job.pk: dispatch.job_created(pk))
        tracing.annotate({"job.id": job.pk})
        return job, True
    raise DuplicateJob(0, options.dedupe_key or "")


def _plan_check(type_name: str, params: dict[str, Any]) -> None:
    """Raise JobNotPlannable when the job type's split fails with these (valid) params: the split made and
    checked (`Split.check`: its statements planned, not run), in a savepoint, so a failing query leaves the
    caller's transaction usable."""
    try:
        with transaction.atomic():
            check_splits(_split(type_name, params))
    except PartitionsError:
        raise
    except Exception as exc:
        log.warning("a %s job with these params cannot be planned: %s", type_name, error_line(exc), exc_info=True)
        raise JobNotPlannable(type_name, error_line(exc)) from exc


def job_preview(type_name: str, params: dict[str, Any] | None = None) -> list[PartitionPlan]:
    """Dry run: validate and split without writing anything (prepare is not run)."""
    return plan_splits(_split(type_name, params))


def _split(type_name: str, params: dict[str, Any] | None) -> Split | Sequence[Split]:
    """What the job type's `split` returns for these params, validated and loaded (nothing planned yet)."""
    job_type = registry.get(type_name)
    cleaned = job_type.load_params(job_type.validate_params(params))
    return job_type.split(Job(type_name=type_name, params=cleaned), cleaned)


def job_throttle(job_id: int, *, actor: Any, rate_limit: float | Any | None = UNSET,
                 pause_ms: int | Any = UNSET, ignore_health: bool | None = None) -> Job:
    """Change a job's throttle while it runs (or before): its rate limit (None: none), its pause after each
    batch, and whether health checks hold it. Running partitions obey at their next batch."""
    with transaction.atomic():
        job = claiming.job_locked(job_id)
        if job is None:
            job_get(job_id)  # raises JobNotFound
        require(actor, Action.THROTTLE, job)
        changes = {"rate_limit": job.rate_limit if rate_limit is UNSET else rate_limit,
                   "pause_ms": job.pause_ms if pause_ms is UNSET else pause_ms}
        if errors := validation.throttle_errors(changes["rate_limit"], changes["pause_ms"]):
            raise InvalidParams(validation.RUN_OPTIONS, errors)
        if changes["rate_limit"] is not None:
            changes["rate_limit"] = float(changes["rate_limit"])
        if ignore_health is not None:
            changes["ignore_health"] = ignore_health
        before = _throttle_data(job)
        for name, value in changes.items():
            setattr(job, name, value)
        actor = Actor.of(actor)
        if _throttle_data(job) != before:  # a change that changes nothing writes nothing (no audit row either)
            job.save(update_fields=list(changes))
            event(job_id, EventType.JOB_THROTTLE_CHANGED, actor, {"before": before, "after": _throttle_data(job)})
        if job.ignore_health and job.throttled_since is not None:
            throttling.throttle_end(job_id, checked_at=None, actor=actor, why="health checks ignored by operator")
    job.refresh_from_db()
    return job


def _throttle_data(job: Job) -> dict[str, Any]:
    return {"rate_limit": job.rate_limit, "pause_ms": job.pause_ms, "ignore_health": job.ignore_health}


def job_cancel(job_id: int, *, actor: Any, reason: str = "") -> Job:
    """Cancel a job: pending partitions and sub-jobs are cancelled; running ones stop at their next batch."""
    require(actor, Action.CANCEL)
    reason = validation.reason_text(reason)
    with transaction.atomic():
        job = transition(Job, job_id, JobStatus.CANCELLED, actor=actor, event_type=EventType.JOB_CANCELLED,
                         data={"reason": reason}, updates={"error": reason})
        job_pending_work_cancel(job_id, actor=actor)
    transaction.on_commit(dispatch.notifications_due)
    return job


def job_pause(job_id: int, *, actor: Any) -> Job:
    """Stop claiming; running partitions hand themselves back at their next batch boundary."""
    require(actor, Action.PAUSE)
    return transition(Job, job_id, JobStatus.PAUSED, actor=actor, event_type=EventType.JOB_PAUSED)


def job_resume(job_id: int, *, actor: Any) -> Job:
    """Claim work again: a paused job runs."""
    require(actor, Action.RESUME)
    job = transition(Job, job_id, JobStatus.RUNNING, actor=actor, event_type=EventType.JOB_RESUMED,
                     guard={"status": JobStatus.PAUSED})
    transaction.on_commit(dispatch.work_available)
    return job


def job_retry_failed(job_id: int, partition_ids: list[int] | None = None, *, actor: Any) -> int:
    """Failed partitions (all, or those selected) back to pending with fresh attempts; reopens a failed job."""
    with transaction.atomic():
        job = job_get(job_id)
        require(actor, Action.RETRY, job)
        where = Q(job_id=job_id, status=PartitionStatus.FAILED)
        if partition_ids is not None:
            where &= Q(pk__in=partition_ids)
        moved = transition_many(Partition, where, PartitionStatus.PENDING,
                                actor=actor, event_type=EventType.PARTITION_RETRIED,
                                updates={"attempts": 0, "available_at": Now(), "last_error": ""})
        if moved:
            handled = _handled(job_id)  # a partition retry keeps its counters: the retry carries on from them
            _reopen(job, actor, "failed partitions retried", count=len(moved), handled=handled, handled_after=handled)
    return len(moved)


def subjobs_retry(job_id: int, subjob_ids: list[int] | None = None, *, actor: Any, reason: str | None = None) -> int:
    """Failed (or skipped) sub-jobs back to pending in new retry partitions; None = all failed ones. With a
    `reason` (the failure ledger's), only the items of that reason: UnknownReason when the job has none."""
    with transaction.atomic():
        job = job_get(job_id)
        require(actor, Action.RETRY, job)
        where = Q(job_id=job_id, status__in=[SubJobStatus.FAILED, SubJobStatus.SKIPPED])
        if subjob_ids is not None:
            where &= Q(pk__in=subjob_ids)
        if reason is not None:
            where &= Q(reason=ledger.reason_check(job_id, reason))
        before = {row["pk"]: row for row in SubJob.objects.filter(where).values("pk", "partition_id", "status")}
        handled = _handled(job_id)
        moved = transition_many(SubJob, where & Q(pk__in=list(before)), SubJobStatus.PENDING, actor=actor,
                                event_type=None,
                                updates={"error": "", "error_class": "", "reason": "", "note": ""})
        if not moved:
            return 0
        by_partition: dict[int, list[int]] = {}
        for row in (before[m.pk] for m in moved):
            by_partition.setdefault(row["partition_id"], []).append(row["pk"])
        # The items move to the retry partitions: take them out of their old partitions' counters.
        for source_id, ids in by_partition.items():
            failed = sum(1 for pk in ids if before[pk]["status"] == SubJobStatus.FAILED)
            Partition.objects.filter(pk=source_id).update(
                estimated_items=F("estimated_items") - len(ids), failed_items=F("failed_items") - failed,
                skipped_items=F("skipped_items") - (len(ids) - failed),
            )
        next_seq = (Partition.objects.filter(job_id=job_id).aggregate(m=Max("seq"))["m"] or 0) + 1
        for offset, (source_id, ids) in enumerate(sorted(by_partition.items())):
            source = Partition.objects.get(pk=source_id)
            scope = source.scope if source.kind == Partition.Kind.RETRY else {
                **source.scope, "items": source.kind == Partition.Kind.ITEMS}
            retry = Partition.objects.create(job=job, seq=next_seq + offset, kind=Partition.Kind.RETRY, scope=scope,
                                             key=source.key, estimated_items=len(ids),
                                             max_attempts=registry.get(job.type_name).max_attempts)
            SubJob.objects.filter(pk__in=ids).update(partition=retry)
        event(job_id, EventType.SUBJOBS_RETRIED, Actor.of(actor), {"count": len(moved)} | (
            {"reason": reason} if reason is not None else {}))
        _reopen(job, actor, "failed sub-jobs retried", count=len(moved), handled=handled,
                handled_after=_handled(job_id))
    return len(moved)


def subjobs_skip(job_id: int, *, reason: str, note: str, actor: Any) -> int:
    """The failed items of one failure reason marked skipped with the operator's note (audited with it).

    Refused with one error, writing nothing: an empty or too long note (InvalidParams), a job whose status does
    not allow it (InvalidTransition), a reason no item of the job has (UnknownReason). A skip runs nothing; a
    failed job it leaves with nothing failed is finalized again (`_finalize_again`), and may end succeeded.
    Returns how many items it skipped (0: the reason's items were skipped already)."""
    note = validation.reason_text(note)
    if not note:
        raise InvalidParams(validation.RUN_OPTIONS, {"note": ["Say why these items are skipped."]})
    with transaction.atomic():
        job = job_get(job_id)
        require(actor, Action.SKIP, job)
        moved = subjobs_skip_failed(job_id, reason=ledger.reason_check(job_id, reason), note=note)
        if moved:
            event(job_id, EventType.SUBJOBS_SKIPPED, Actor.of(actor), {"count": moved, "reason": reason, "note": note})
            if job.status == JobStatus.FAILED and not _failures_left(job_id):
                _finalize_again(job_id, actor)
    return moved


def _failures_left(job_id: int) -> bool:
    return (Partition.objects.filter(job_id=job_id, status=PartitionStatus.FAILED).exists()
            or SubJob.objects.filter(job_id=job_id, status=SubJobStatus.FAILED).exists())


def _finalize_again(job_id: int, actor: Any) -> None:
    """A failed job with nothing left failed: to finalizing with its step lease lapsed, so the finalize step
    (dispatched now, or tick's for a lost one) runs again and ends it succeeded when the proof holds."""
    transition(Job, job_id, JobStatus.FINALIZING, actor=actor, event_type=EventType.JOB_FINALIZE_REQUESTED,
               data={"reason": "its last failed items were skipped"},
               updates={"step_owner": "", "step_expires_at": Now()})
    transaction.on_commit(lambda: dispatch.job_drained(job_id))


def _handled(job_id: int) -> int:
    return job_progress(job_id).handled


def _reopen(job: Job, actor: Any, reason: str, *, count: int, handled: int, handled_after: int) -> None:
    """A failed job runs again as a new attempt; its event keeps the items handled before the retry and after
    it took the retried items out of the counters, so statistics can tell the attempts apart."""
    if job.status in JOB_REOPENABLE:
        try:
            transition(Job, job.pk, JobStatus.RUNNING, actor=actor, event_type=EventType.JOB_REOPENED,
                       data={"reason": reason, "count": count, "handled": handled, "handled_after": handled_after},
                       updates={"error": ""})
        except IntegrityError as exc:
            raise DuplicateJob(job.pk, job.dedupe_key or "") from exc
    transaction.on_commit(dispatch.work_available)


def job_rerun(job_id: int, *, actor: Any) -> Job:
    """A new job with the same type and params."""
    require(actor, Action.RERUN)
    old = job_get(job_id)
    job, _ = job_start(old.type_name, old.params, actor=actor, max_parallel=old.max_parallel, priority=old.priority,
                       rate_limit=old.rate_limit, pause_ms=old.pause_ms)
    event(old.pk, EventType.JOB_RERUN, Actor.of(actor), {"new_job": job.pk})
    return job


