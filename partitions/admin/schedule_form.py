"""The start page's "Schedule" part: name, cadence, time zone, first fire and a deadline relative to each fire.

The job type's Params form and the run options are the start page's own; `schedule_submit` hands all of it to
`schedules.schedule_create`, which validates everything again (nothing is written on any error).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from partitions.core import validation
from partitions.core.exceptions import InvalidParams, InvalidSchedule, ScheduleNameTaken
from partitions.operations import cadence as cadences
from partitions.operations import schedules
from partitions.operations.cadence import Cadence

PREFIX = "schedule"


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=schedules.NAME_MAX_LENGTH, required=False,
                           help_text="Unique; letters, digits, '.', '_' or '-'.")
    kind = forms.ChoiceField(label="Cadence", initial=cadences.CRON, choices=[
        (cadences.CRON, "cron expression"), (cadences.MINUTES, "every N minutes"),
        (cadences.HOURS, "every N hours"), (cadences.DAYS, "every N days"), (cadences.MONTHLY, "every N months")])
    cron = forms.CharField(required=False, max_length=100, label="Cron", help_text='e.g. "0 2 * * *" (02:00 daily).')
    every = forms.IntegerField(required=False, min_value=1, initial=1, label="Every N")
    timezone = forms.CharField(initial="UTC", max_length=64, label="Time zone", help_text="IANA, e.g. Europe/Madrid.")
    start_at = forms.DateTimeField(
        required=False, label="First run", widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                                                      format="%Y-%m-%dT%H:%M"),
        help_text="Intervals and monthly repeat from it (in the time zone above); empty: now.")
    deadline_offset = forms.CharField(required=False, max_length=20, label="Deadline after each fire",
                                      help_text="e.g. +90m, +2h, +1d; empty: none.")

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("name") or "").strip():
            self.add_error("name", "A schedule needs a name.")
        text = cleaned.get("deadline_offset") or ""
        cleaned["offset"] = cadences.parse_offset(text) if text.strip() else None
        if text.strip() and cleaned["offset"] is None:
            self.add_error("deadline_offset", "Enter a deadline after the fire such as +90m, +2h or +1d.")
        zone_name = (cleaned.get("timezone") or "").strip()
        if problem := validation.time_zone_error(zone_name):
            self.add_error("timezone", problem)
        start_at, tz = cleaned.get("start_at"), validation.time_zone(zone_name)
        if start_at is not None and tz is not None:  # the widget's wall time is in the schedule's time zone
            try:
                cleaned["start_at"] = cadences.local_instant(start_at, tz)  # the DST rule, like every fire
            except (OverflowError, ValueError):
                self.add_error("start_at", "Enter a date-time within range.")
        return cleaned

    def cadence(self) -> Cadence:
        data = self.cleaned_data
        return Cadence(kind=data["kind"], cron=data.get("cron") or "", every=data.get("every") or 1,
                       tz=(data.get("timezone") or "").strip())


def schedule_submit(request, type_name: str, data: dict, params_form, options, form: ScheduleForm):
    """Create the schedule (a redirect to its page), or None with the reasons shown next to the fields."""
    valid = form.is_valid() & options.is_valid()
    if options.is_valid() and options.cleaned_data.get("deadline"):
        options.add_error("deadline", "A schedule takes a deadline relative to each fire (below), not a date.")
        valid = False
    if not valid:
        params_form.is_valid()
        return None
    chosen = options.cleaned_data
    try:
        schedule = schedules.schedule_create(
            actor=request.user, name=form.cleaned_data["name"], type_name=type_name, params=data,
            cadence=form.cadence(), start_at=form.cleaned_data.get("start_at"),
            max_parallel=chosen["max_parallel"] or 0, deadline_offset=form.cleaned_data["offset"],
            rate_limit=validation.UNSET if chosen.get("rate_limit") is None else chosen["rate_limit"],
            pause_ms=validation.UNSET if chosen.get("pause_ms") is None else chosen["pause_ms"],
            notify=options.notify_values())
    except ScheduleNameTaken as exc:
        form.add_error("name", str(exc).capitalize() + ".")
    except InvalidSchedule as exc:
        for field, errors in exc.errors.items():
            for error in errors:
                target = {"tz": "timezone", "deadline": "deadline_offset"}.get(field, field)
                form.add_error(target if target in form.fields else None, error)
    except InvalidParams:
        raise  # the start page shows the params' errors next to their fields
    else:
        cadence = schedules.cadence_of(schedule).describe()
        messages.success(request, f"Scheduled {schedule.name} ({type_name}): {cadence}, first run"
                                  f" {schedule.next_run_at:%Y-%m-%d %H:%M} UTC.")
        return HttpResponseRedirect(reverse("admin:partitions_jobschedule_change", args=[schedule.pk]))
    params_form.is_valid()
    return None
