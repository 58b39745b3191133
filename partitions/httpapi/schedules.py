"""Schedules: list, create, pause, resume and delete, through `partitions.operations.schedules` with the acting
user (its permission rules and its ScheduleEvent audit), the same summary as `jobs schedules --json`."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router, Status

from partitions.core import validation
from partitions.httpapi import schemas as s
from partitions.httpapi.auth import require_perm, user_of
from partitions.httpapi.problems import ERRORS, ApiProblem
from partitions.management.schedules_cli import EVERY_UNITS, schedule_summary
from partitions.models import JobSchedule
from partitions.operations import cadence as cadences
from partitions.operations import schedules
from partitions.operations.cadence import Cadence

router = Router(tags=["schedules"])

Name = Path(..., max_length=schedules.NAME_MAX_LENGTH, pattern=rf"^{schedules.NAME_PATTERN.pattern}$",
            description="The schedule's name.")


@router.get("/schedules", response={200: s.SchedulePage, **ERRORS}, summary="Schedules, by name")
def schedules_list(request: HttpRequest,
                   after: str | None = Query(None, max_length=schedules.NAME_MAX_LENGTH,
                                             description="The cursor: the page before's `next_after`."),
                   limit: int = Query(s.PAGE_DEFAULT, ge=1, le=s.PAGE_MAX)) -> dict[str, Any]:
    """Schedules by name (a keyset page), with their next and last run."""
    require_perm(request, "partitions.view_jobschedule", "listing schedules")
    rows = JobSchedule.objects.select_related("last_job").order_by("name")
    if after is not None:
        rows = rows.filter(name__gt=after.replace("\x00", ""))
    page = s.keyset_page(list(rows[: limit + 1]), limit, lambda row: row.name)
    return {**page, "items": [schedule_summary(row) for row in page["items"]]}


def _cadence(payload: s.ScheduleIn) -> Cadence:
    """The one cadence given (cron, every or monthly), as the CLI builds it; a 422 naming the fields otherwise."""
    given = [name for name, value in (("cron", payload.cron), ("every", payload.every), ("monthly", payload.monthly))
             if value]
    if len(given) != 1:
        raise ApiProblem(422, "invalid-schedule", "give exactly one of cron, every or monthly",
                         {name: "Give exactly one of cron, every or monthly." for name in given or ["cron"]})
    if payload.cron:
        return Cadence(kind=cadences.CRON, cron=payload.cron, tz=payload.timezone)
    if payload.every:
        parsed = validation.parse_duration(payload.every)
        if parsed is None:
            raise ApiProblem(422, "invalid-schedule", f"every is not an interval such as 5m, 2h or 1d: "
                             f"{payload.every[:80]!r}", {"every": "Enter an interval such as 5m, 2h or 1d."})
        return Cadence(kind=EVERY_UNITS[parsed[1]], every=parsed[0], tz=payload.timezone)
    return Cadence(kind=cadences.MONTHLY, tz=payload.timezone)


@router.post("/schedules", response={201: s.ScheduleOut, **ERRORS}, summary="Create a schedule")
def schedule_create(request: HttpRequest, payload: s.ScheduleIn) -> Status:
    """Create a schedule (201), validated as the admin's and the CLI's."""
    if problem := validation.time_zone_error(payload.timezone):
        raise ApiProblem(422, "invalid-schedule", problem, {"timezone": problem})
    offset = None
    if payload.deadline is not None and (offset := cadences.parse_offset(payload.deadline)) is None:
        raise ApiProblem(422, "invalid-schedule", "deadline is not an offset such as +90m, +2h or +1d",
                         {"deadline": "Enter a deadline after each fire such as +90m, +2h or +1d (at most +366d)."})
    schedule = schedules.schedule_create(
        actor=user_of(request), name=payload.name, type_name=payload.type, params=payload.params,
        cadence=_cadence(payload), start_at=payload.start_at, max_parallel=payload.max_parallel,
        priority=payload.priority, deadline_offset=offset, notify=payload.notify, **s.throttle_of(payload))
    return Status(201, schedule_summary(schedule))


@router.post("/schedules/{name}/pause", response={200: s.ScheduleOut, **ERRORS}, summary="Pause a schedule")
def schedule_pause(request: HttpRequest, payload: s.PauseIn, name: str = Name) -> dict[str, Any]:
    """Stop a schedule's fires (a running job is not touched)."""
    user = user_of(request)
    reason = payload.reason or f"paused through the API by {user.get_username()}"
    return schedule_summary(schedules.schedule_pause(name, actor=user, reason=reason))


@router.post("/schedules/{name}/resume", response={200: s.ScheduleOut, **ERRORS}, summary="Resume a schedule")
def schedule_resume(request: HttpRequest, name: str = Name) -> dict[str, Any]:
    """Fire a paused schedule again from its next fire."""
    return schedule_summary(schedules.schedule_resume(name, actor=user_of(request)))


@router.delete("/schedules/{name}", response={204: None, **ERRORS}, summary="Delete a schedule (its jobs stay)")
def schedule_delete(request: HttpRequest, name: str = Name) -> HttpResponse:
    """Delete a schedule (204); its jobs and its history stay."""
    schedules.schedule_delete(name, actor=user_of(request))
    return HttpResponse(status=204)
