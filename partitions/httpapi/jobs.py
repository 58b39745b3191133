"""Job types and jobs: list, start (with dry run, sample and `Idempotency-Key`), read, and steer. Each endpoint
calls the service the admin and the CLI call, with the acting user, so the same permission rule
(`partitions.permissions`) decides and the same audit event names the user."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Header, Path, Query, Router, Status

from partitions.core import validation
from partitions.core.encoding import dumps
from partitions.core.exceptions import InvalidParams, InvalidTransition, JobNotPlannable, PartitionsError, error_line
from partitions.core.states import JobStatus, PartitionStatus
from partitions.httpapi import schemas as s
from partitions.httpapi.auth import require_perm, user_of
from partitions.httpapi.paramschema import params_schema
from partitions.httpapi.problems import ERRORS, ApiProblem
from partitions.jobtypes import registry
from partitions.management.cli_output import job_summary, plan_rows
from partitions.models import ApiIdempotencyKey, Job, JobEvent
from partitions.operations import knob, services
from partitions.permissions import Action, Perm, require
from partitions.reads import ledger
from partitions.reads.estimates import plan_estimate
from partitions.reads.pages import job_get, job_partitions
from partitions.reads.statistics import job_run_statistics, job_stats, jobs_stats
from partitions.worker.sample_run import SAMPLE_ITEMS_DEFAULT, job_sample, sample_refusal

router = Router(tags=["jobs"])

JobId = Path(..., ge=1, le=validation.BIGINT_MAX, description="The job's id.")
After = Query(None, ge=0, le=validation.BIGINT_MAX, description="The cursor: the page before's `next_after`.")
Limit = Query(s.PAGE_DEFAULT, ge=1, le=s.PAGE_MAX, description=f"Rows of the page (at most {s.PAGE_MAX}).")
IDEMPOTENCY_KEY_MAX = 100
VIEW_JOBS = "partitions.view_job"


def _detail(job: Job, **extra: Any) -> dict[str, Any]:
    stats = job_stats(job)
    return {**job_summary(job, stats), "statistics": job_run_statistics(job, stats=stats), **extra}


@router.get("/job-types", response={200: list[s.JobTypeOut], **ERRORS}, summary="Job types and their params")
def job_types(request: HttpRequest) -> list[dict[str, Any]]:
    """The registered job types, each with its params as JSON Schema."""
    require_perm(request, VIEW_JOBS, "listing job types")
    return [{"name": name, "label": jt.label or name,
             "description": (type(jt).__doc__ or "").strip().split("\n")[0],
             "params_schema": params_schema(jt.Params), "sample_refused": sample_refusal(jt)}
            for name, jt in registry.all_types().items()]


@router.get("/jobs", response={200: s.JobPage, **ERRORS}, summary="Jobs, newest first")
def jobs_list(request: HttpRequest, status: JobStatus | None = None,
              type: str | None = Query(None, max_length=200, description="A job type's name."),
              after: int | None = After, limit: int = Limit) -> dict[str, Any]:
    """Jobs newest first (a keyset page), each with its progress and projection."""
    require_perm(request, VIEW_JOBS, "listing jobs")
    jobs = Job.objects.order_by("-id")
    if status is not None:
        jobs = jobs.filter(status=status)
    if type is not None:
        jobs = jobs.filter(type_name=type)
    if after is not None:
        jobs = jobs.filter(id__lt=after)
    page = s.keyset_page(list(jobs[: limit + 1]), limit, lambda job: job.pk)
    stats = jobs_stats(page["items"])
    return {**page, "items": [job_summary(job, stats[job.pk]) for job in page["items"]]}


@router.get("/jobs/{job_id}", response={200: s.JobDetailOut, **ERRORS}, summary="One job's status and figures")
def job_status(request: HttpRequest, job_id: int = JobId) -> dict[str, Any]:
    """One job: the figures of its page and of `jobs status --json`, and its statistics."""
    require_perm(request, VIEW_JOBS, "reading jobs")
    return _detail(job_get(job_id))


@router.get("/jobs/{job_id}/partitions", response={200: s.PartitionPage, **ERRORS}, summary="A job's partitions")
def job_partitions_list(request: HttpRequest, job_id: int = JobId, status: PartitionStatus | None = None,
                        after: int | None = After, limit: int = Limit) -> dict[str, Any]:
    """A job's partitions in seq order (a keyset page)."""
    require_perm(request, Perm.VIEW_PARTITIONS, "reading partitions")
    rows = job_partitions(job_get(job_id).pk, status=status)
    if after is not None:
        rows = rows.filter(seq__gt=after)
    return s.keyset_page(list(rows[: limit + 1]), limit, lambda p: p.seq)


@router.get("/jobs/{job_id}/events", response={200: s.EventPage, **ERRORS}, summary="A job's events, oldest first")
def job_events_list(request: HttpRequest, job_id: int = JobId, after: int | None = After,
                    limit: int = Limit) -> dict[str, Any]:
    """A job's events oldest first (a keyset page: `after` tails the timeline)."""
    require_perm(request, "partitions.view_jobevent", "reading events")
    events = JobEvent.objects.filter(job=job_get(job_id)).order_by("id")
    if after is not None:
        events = events.filter(id__gt=after)
    return s.keyset_page(list(events[: limit + 1]), limit, lambda e: e.pk)


@router.get("/jobs/{job_id}/failures", response={200: s.FailuresOut, **ERRORS},
            summary="A job's failed and skipped items grouped by reason")
def job_failures(request: HttpRequest, job_id: int = JobId) -> dict[str, Any]:
    """A job's failed and skipped items grouped by reason, the largest groups first."""
    require(user_of(request), Action.VIEW_FAILURES)
    groups = ledger.job_failure_groups(job_get(job_id).pk)
    return {"job": job_id, "total": groups.total, "reasons": groups.reasons, "more": groups.more,
            "groups": [{**asdict(g), "skipped": g.skipped} for g in groups.groups]}


@router.get("/jobs/{job_id}/failures/items", response={200: s.FailedItemPage, **ERRORS},
            summary="The failed and skipped items of one reason")
def job_failed_items(request: HttpRequest, job_id: int = JobId,
                     reason: str = Query(..., max_length=ledger.REASON_MAX_LENGTH,
                                         description="A reason exactly as /failures lists it."),
                     status: Literal["failed", "skipped"] | None = None, after: int | None = After,
                     limit: int = Limit) -> dict[str, Any]:
    """The failed and skipped items of one reason in id order (a keyset page)."""
    require(user_of(request), Action.VIEW_FAILURES)
    job = job_get(job_id)
    ledger.reason_check(job.pk, reason)
    items = ledger.job_failed_items(job.pk, reason=reason, status=status, after_id=after, limit=limit + 1)
    page = s.keyset_page(items, limit, lambda item: item.id)
    return {**page, "items": [asdict(item) for item in page["items"]]}


# Starting -----------------------------------------------------------------------------------------------------


def _unknown_params(type_name: str, params: dict[str, Any]) -> None:
    """InvalidParams naming each param the type's Params form does not have (the CLI refuses them too)."""
    known = registry.get(type_name).Params.base_fields
    if unknown := sorted(set(params) - set(known)):
        takes = ", ".join(known) or "none"
        raise InvalidParams(type_name, {name: [f"Unknown param; {type_name} takes {takes}."] for name in unknown})


def _preview(user: Any, payload: s.StartIn) -> dict[str, Any]:
    """The dry run (and the sample), as `jobs start --dry-run --json` reports it; nothing is written."""
    require(user, Action.START)
    if payload.sample_items is not None and payload.sample is None:
        raise ApiProblem(422, "invalid-request", "sample_items needs sample",
                         {"sample_items": "Give sample (partitions) too."})
    throttle = s.throttle_of(payload)
    options = validation.run_options(max_parallel=payload.max_parallel, priority=payload.priority,
                                     deadline=payload.deadline,
                                     **{k: v for k, v in throttle.items() if v is not validation.UNSET})
    try:
        plans = services.job_preview(payload.type, payload.params)
    except PartitionsError:
        raise
    except Exception as exc:  # the job type's split failed: as the start would refuse it
        raise JobNotPlannable(payload.type, error_line(exc)) from exc
    rows = plan_rows(plans)
    rate = throttle["rate_limit"]
    limit = registry.get(payload.type).rate_limit if rate is validation.UNSET else rate
    estimate = plan_estimate(payload.type, sum(r["estimated_items"] for r in rows), deadline=options.deadline,
                             rate_limit=limit)
    report: dict[str, Any] = {"dry_run": True, "partitions": rows, "estimate": asdict(estimate), "sample": None}
    if payload.sample is not None:
        require(user, Action.SAMPLE)
        report["sample"] = job_sample(
            payload.type, payload.params, partitions=payload.sample,
            items=payload.sample_items or SAMPLE_ITEMS_DEFAULT, max_parallel=options.max_parallel,
            rate_limit=rate, deadline=options.deadline, plans=plans).as_dict()
    return report


def _request_hash(payload: s.StartIn) -> str:
    return hashlib.sha256(dumps(payload.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _replayed(user: Any, key: str, digest: str) -> Job | None:
    """The job an earlier request with this key started, or None; a 422 when that request was another."""
    earlier = ApiIdempotencyKey.objects.filter(user=user, key=key).select_related("job").first()
    if earlier is None:
        return None
    if earlier.request_hash != digest:
        raise ApiProblem(422, "idempotency-key-reused",
                         f"Idempotency-Key {key!r} was used for another request (job {earlier.job_id}): "
                         "use a new key for a new request",
                         {"Idempotency-Key": "Already used with a different request body."})
    return earlier.job


@router.post("/jobs", response={200: s.JobDetailOut | s.PreviewOut, 201: s.JobDetailOut, **ERRORS},
             summary="Start a job (or dry-run it)")
def job_start(request: HttpRequest, payload: s.StartIn,
              idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1,
                                                   max_length=IDEMPOTENCY_KEY_MAX,
                                                   pattern=r"^[\x21-\x7e]+$",
                                                   description="A retried request with the same key and body "
                                                               "returns the first one's job.")) -> Status:
    """Start a job (201; 200 when the Idempotency-Key names an earlier one), or dry-run it."""
    user = user_of(request)
    if payload.dry_run:
        return Status(200, _preview(user, payload))
    if payload.sample is not None or payload.sample_items is not None:
        raise ApiProblem(422, "invalid-request", "a sample never starts a job: give dry_run: true",
                         {"sample": "Needs dry_run: true."})
    registry.get(payload.type)  # an unknown type is refused before its params are looked at
    _unknown_params(payload.type, payload.params)
    digest = _request_hash(payload)
    if idempotency_key is not None and (job := _replayed(user, idempotency_key, digest)) is not None:
        return Status(200, _detail(job, created=False))
    job, created = _start(user, payload, idempotency_key, digest)
    return Status(201 if created else 200, _detail(job, created=created))


def _start(user: Any, payload: s.StartIn, key: str | None, digest: str) -> tuple[Job, bool]:
    """job_start with the acting user; with a key, the job and the key are recorded together (the key's dedupe
    key settles two concurrent requests on one job)."""
    start = dict(actor=user, max_parallel=payload.max_parallel, priority=payload.priority,
                 deadline=payload.deadline, notify=payload.notify, **s.throttle_of(payload))
    if key is None:
        return services.job_start(payload.type, payload.params, **start)
    try:
        with transaction.atomic():
            job, created = services.job_start(payload.type, payload.params, dedupe_key=f"api:{user.pk}:{key}",
                                              **start)
            ApiIdempotencyKey.objects.create(user=user, key=key, request_hash=digest, job=job)
    except IntegrityError:  # a concurrent request with this key recorded it first
        job = _replayed(user, key, digest)
        if job is None:
            raise
        return job, False
    return job, created


# Steering -----------------------------------------------------------------------------------------------------


@router.post("/jobs/{job_id}/pause", response={200: s.JobDetailOut, **ERRORS}, summary="Pause a running job")
def job_pause(request: HttpRequest, job_id: int = JobId) -> dict[str, Any]:
    """Pause a running job: running partitions stop at their next batch."""
    job_get(job_id)
    return _detail(services.job_pause(job_id, actor=user_of(request)))


@router.post("/jobs/{job_id}/resume", response={200: s.JobDetailOut, **ERRORS}, summary="Resume a paused job")
def job_resume(request: HttpRequest, job_id: int = JobId) -> dict[str, Any]:
    """Resume a paused job."""
    job = job_get(job_id)
    if job.status != JobStatus.PAUSED:  # as the CLI: resume means paused only (a failed job is retried)
        require(user_of(request), Action.RESUME)
        raise InvalidTransition("Job", job_id, job.status, JobStatus.RUNNING)
    return _detail(services.job_resume(job_id, actor=user_of(request)))


@router.post("/jobs/{job_id}/cancel", response={200: s.JobDetailOut, **ERRORS}, summary="Cancel a job")
def job_cancel(request: HttpRequest, payload: s.CancelIn, job_id: int = JobId) -> dict[str, Any]:
    """Cancel a job that has not ended, with a reason."""
    job_get(job_id)
    return _detail(services.job_cancel(job_id, actor=user_of(request), reason=payload.reason))


@router.post("/jobs/{job_id}/retry", response={200: s.RetryOut, **ERRORS},
             summary="Retry failed partitions, failed sub-jobs, or the items of one reason")
def job_retry(request: HttpRequest, payload: s.RetryIn, job_id: int = JobId) -> dict[str, Any]:
    """Retry failed partitions, failed sub-jobs, or the failed and skipped items of one reason."""
    job_get(job_id)
    user = user_of(request)
    subjobs = payload.what == "subjobs" or payload.reason is not None or payload.subjob_ids is not None
    if subjobs and payload.partition_ids is not None:
        raise ApiProblem(422, "invalid-request", "partition_ids retries partitions, not sub-jobs",
                         {"partition_ids": "Not with what: subjobs, subjob_ids or reason."})
    if subjobs:
        count = services.subjobs_retry(job_id, payload.subjob_ids, actor=user, reason=payload.reason)
    else:
        count = services.job_retry_failed(job_id, payload.partition_ids, actor=user)
    return {"job": job_id, "what": "subjobs" if subjobs else "partitions", "retried": count}


@router.post("/jobs/{job_id}/throttle", response={200: s.JobDetailOut, **ERRORS},
             summary="Change a job's rate limit, pause or health override")
def job_throttle(request: HttpRequest, payload: s.ThrottleIn, job_id: int = JobId) -> dict[str, Any]:
    """Change a job's rate limit, pause after each batch, or health override."""
    job_get(job_id)
    return _detail(services.job_throttle(job_id, actor=user_of(request), ignore_health=payload.ignore_health,
                                         **s.throttle_of(payload)))


@router.post("/jobs/{job_id}/set", response={200: s.JobDetailOut, **ERRORS},
             summary="Change a live job's max parallel or deadline (the knob)")
def job_set(request: HttpRequest, payload: s.SetIn, job_id: int = JobId) -> dict[str, Any]:
    """Change a live job's max parallel or deadline (the time/cost knob)."""
    job_get(job_id)
    changes = {name: getattr(payload, name) for name in ("max_parallel", "deadline")
               if name in payload.model_fields_set and not (name == "max_parallel" and payload.max_parallel is None)}
    return _detail(knob.job_set(job_id, actor=user_of(request), **changes))


@router.post("/jobs/{job_id}/skip", response={200: s.SkipOut, **ERRORS},
             summary="Mark the failed items of one reason skipped, with a note")
def job_skip(request: HttpRequest, payload: s.SkipIn, job_id: int = JobId) -> dict[str, Any]:
    """Mark the failed items of one reason skipped, with the operator's note."""
    job_get(job_id)
    count = services.subjobs_skip(job_id, reason=payload.reason, note=payload.note, actor=user_of(request))
    return {"job": job_id, "reason": payload.reason, "skipped": count}

