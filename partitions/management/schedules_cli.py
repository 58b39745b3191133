"""`manage.py jobs schedule|schedules|schedule-show|schedule-run|schedule-pause|schedule-resume|unschedule`:
recurring runs from the CLI, thin over `partitions.operations.schedules` (mixed into the `jobs` command)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from partitions.core import humanize, validation
from partitions.core.events import ScheduleEventType
from partitions.management.cli_arguments import Pair, param_pair
from partitions.models import JobSchedule, ScheduleEvent
from partitions.operations import cadence as cadences
from partitions.operations import schedules
from partitions.operations.cadence import Cadence

EVERY_UNITS = {"m": cadences.MINUTES, "h": cadences.HOURS, "d": cadences.DAYS}


def every_arg(value: str) -> tuple[str, int]:
    """argparse type for --every: `5m`, `2h`, `1d` -> (kind, N) (`validation.parse_duration`'s grammar)."""
    parsed = validation.parse_duration(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"expected an interval such as 5m, 2h or 1d, got {value!r}")
    return EVERY_UNITS[parsed[1]], parsed[0]


def tz_arg(value: str) -> str:
    """argparse type for --tz: an IANA time zone name, exactly (`validation.time_zone`)."""
    if problem := validation.time_zone_error(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def start_at_arg(value: str, tz: str):
    """--start-at as an aware date-time: a time from now (`+2h`, as every deadline input reads one), or ISO
    8601, a wall time without offset read in the schedule's zone (by the DST rule of `cadence.local_instant`);
    the service checks its range (offsets past ±15:59 included)."""
    if (when := validation.relative_deadline(value)) is not None:
        return when
    try:
        first = parse_datetime(value.strip())
    except ValueError:  # well formed but not a real date-time
        first = None
    if first is not None and timezone.is_naive(first):
        try:
            first = cadences.local_instant(first, validation.time_zone(tz) or timezone.get_current_timezone())
        except (OverflowError, ValueError):  # year 1 or 9999 read in a zone that pushes it out of range
            first = None
    if first is None:
        raise CommandError(f"--start-at is not an ISO 8601 date-time in range or a time from now such as +2h: "
                           f"{value!r}")
    return first


def offset_arg(value: str):
    """argparse type for a schedule's --deadline: relative to each fire (`+90m`, `+2h`, `+1d`)."""
    offset = cadences.parse_offset(value)
    if offset is None:
        raise argparse.ArgumentTypeError(f"expected a deadline after each fire such as +90m, +2h or +1d "
                                         f"(at most +366d), got {value!r}")
    return offset


def schedule_summary(schedule: JobSchedule) -> dict[str, Any]:
    """The machine-readable state of a schedule (what --json prints)."""
    job = schedule.last_job
    return {
        "name": schedule.name, "type": schedule.type_name, "params": schedule.params,
        "cadence": schedules.cadence_of(schedule).describe(), "kind": schedule.kind, "cron": schedule.cron,
        "every": schedule.every, "timezone": schedule.timezone, "enabled": schedule.enabled,
        "paused_reason": schedule.paused_reason, "next_run_at": schedule.next_run_at,
        "last_run_at": schedule.last_run_at, "last_job": job.pk if job else None,
        "last_job_status": job.status if job else None, "max_parallel": schedule.max_parallel,
        "priority": schedule.priority, "deadline": cadences.format_offset(schedule.deadline_offset) or None,
        "throttle": schedule.throttle, "notify": schedule.notify,
    }


def schedule_line(s: dict[str, Any]) -> str:
    when = f"next {humanize.when(s['next_run_at'])}" if s["next_run_at"] else f"PAUSED: {s['paused_reason']}"
    last = f"last job #{s['last_job']} {s['last_job_status']}" if s["last_job"] else "no run yet"
    return f"{s['name']:24} {s['type']:32} {s['cadence']:34} {when}  ({last})"


class ScheduleCommands:
    """The schedule subcommands of `jobs` (it provides `emit`, `ACTOR` and the shared argument types)."""

    def add_schedule_arguments(self, add, *, whole_number, rate_arg) -> None:
        create = add("schedule", "start a job type on a schedule (cron, --every or --monthly)")
        create.add_argument("type_name")
        create.add_argument("--name", required=True, help="unique name of the schedule")
        create.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", type=param_pair)
        cadence = create.add_mutually_exclusive_group(required=True)
        cadence.add_argument("--cron", help='a five-field cron expression, e.g. "0 2 * * *"')
        cadence.add_argument("--every", type=every_arg, help="an interval: 5m, 2h or 1d")
        cadence.add_argument("--monthly", action="store_true", help="every month on --start-at's day and time")
        create.add_argument("--tz", type=tz_arg, default="UTC", help="IANA time zone of the cadence (default UTC)")
        create.add_argument("--start-at", help="the first fire of --every/--monthly: a time from now (+2h, +1d) "
                                               "or ISO 8601 (default: now)")
        create.add_argument("--deadline", type=offset_arg, help="each run's deadline after its fire: +90m, +2h")
        create.add_argument("--max-parallel", type=whole_number, default=0)
        create.add_argument("--priority", type=whole_number, default=0)
        create.add_argument("--rate", type=rate_arg, default=validation.UNSET, help="items/s, or none")
        create.add_argument("--pause-ms", type=whole_number, default=validation.UNSET)
        create.add_argument("--notify", action="append", default=[], metavar="CHANNEL")
        add("schedules", "list schedules: cadence, next and last run, the last job's status")
        for name, text in [("schedule-show", "one schedule and its history (each run's job)"),
                           ("schedule-run", "fire a schedule now (skipped while its last run is active)"),
                           ("schedule-pause", "stop a schedule's fires"),
                           ("schedule-resume", "fire a paused schedule again from its next fire"),
                           ("unschedule", "delete a schedule (its jobs and history stay)")]:
            add(name, text).add_argument("name")

    def do_schedule(self, *, type_name: str, name: str, param: list[Pair], cron: str | None, every, monthly: bool,
                    tz: str, start_at: str | None, deadline, max_parallel: int, priority: int, rate, pause_ms,
                    notify: list[str], **options):
        params = self.params_of(type_name, param)
        if cron is not None:
            cadence = Cadence(kind=cadences.CRON, cron=cron, tz=tz)
        elif every is not None:
            cadence = Cadence(kind=every[0], every=every[1], tz=tz)
        else:
            cadence = Cadence(kind=cadences.MONTHLY, tz=tz)
        first = None if start_at is None else start_at_arg(start_at, tz)
        schedule = schedules.schedule_create(
            actor=self.ACTOR, name=name, type_name=type_name, params=params, cadence=cadence, start_at=first,
            max_parallel=max_parallel, priority=priority, deadline_offset=deadline, rate_limit=rate,
            pause_ms=pause_ms, notify=notify)
        summary = schedule_summary(schedule)
        self.emit(summary, f"schedule {schedule.name} created: {summary['cadence']}, "
                           f"next {humanize.when(schedule.next_run_at)}")

    def do_schedules(self, **options):
        rows = [schedule_summary(s) for s in JobSchedule.objects.select_related("last_job").order_by("name")]
        self.emit(rows, "\n".join(schedule_line(r) for r in rows) or "no schedules")

    def do_schedule_show(self, *, name: str, **options):
        schedule = schedules.schedule_get(name)
        history = [{"at": e.created_at, "type": e.type, "actor": e.actor, "job": e.job_id,
                    "scheduled_for": e.scheduled_for, "data": e.data}
                   for e in ScheduleEvent.objects.filter(schedule=schedule).order_by("-id")[:50]]
        lines = [schedule_line(schedule_summary(schedule))] + [
            f"  {humanize.when(h['at'])}  {h['type']:22} {h['actor']:28} "
            f"{'job #' + str(h['job']) if h['job'] else '':10} {h['data'].get('reason', '')}" for h in history]
        self.emit({**schedule_summary(schedule), "history": history}, "\n".join(lines))

    def do_schedule_run(self, *, name: str, **options):
        result = schedules.schedule_run_now(name, actor=self.ACTOR)
        schedule = schedules.schedule_get(name)
        text = {ScheduleEventType.FIRE_STARTED: f"schedule {name}: started job #{result.job.pk if result.job else ''}",
                ScheduleEventType.FIRE_SKIPPED: f"schedule {name}: skipped: {result.detail}",
                ScheduleEventType.SCHEDULE_AUTO_PAUSED: f"schedule {name}: {result.detail}"}[result.outcome]
        self.emit({**schedule_summary(schedule), "outcome": result.outcome, "job": result.job.pk if result.job
                   else None, "detail": result.detail}, text)
        if result.outcome == ScheduleEventType.SCHEDULE_AUTO_PAUSED:
            raise CommandError(f"schedule {name} paused: its params no longer validate")

    def do_schedule_pause(self, *, name: str, **options):
        schedule = schedules.schedule_pause(name, actor=self.ACTOR, reason="paused from the CLI")
        self.emit(schedule_summary(schedule), f"schedule {name} paused")

    def do_schedule_resume(self, *, name: str, **options):
        schedule = schedules.schedule_resume(name, actor=self.ACTOR)
        self.emit(schedule_summary(schedule),
                  f"schedule {name} resumed: next {humanize.when(schedule.next_run_at)}")

    def do_unschedule(self, *, name: str, **options):
        schedules.schedule_delete(name, actor=self.ACTOR)
        self.emit({"name": name, "deleted": True}, f"schedule {name} deleted")
