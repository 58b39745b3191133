"""Schedules in the admin: the list (cadence, next/last run, the last job's status), the schedule page with its
history (each run a link to its job), and pause / resume / run now / delete, per schedule and in bulk.

Like the job actions: one table, each action guarded by a permission, POSTed with CSRF through a confirm
page, and one service call with `actor=request.user` that writes the ScheduleEvent (the audit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from partitions.admin import display, start
from partitions.admin.actions import ActionResult
from partitions.admin.base import (
    EngineAdmin,
    action_target,
    confirm_response,
    job_link,
    report,
    selection_hidden,
    selection_items,
)
from partitions.core import humanize
from partitions.core.events import ScheduleEventType
from partitions.core.exceptions import InvalidParams, PartitionsError, ScheduleNotFound
from partitions.models import JobSchedule, ScheduleEvent
from partitions.operations import cadence as cadences
from partitions.operations import schedules
from partitions.permissions import Action, may

#: Rows of history the schedule page shows.
HISTORY_ROWS = 100


def schedule_url(schedule_id: int) -> str:
    return reverse("admin:partitions_jobschedule_change", args=[schedule_id])


def _run_now(schedule: JobSchedule, user: Any) -> ActionResult:
    result = schedules.schedule_run_now(schedule.pk, actor=user)
    if result.outcome == ScheduleEventType.FIRE_STARTED:
        return ActionResult(f"Schedule {schedule.name}: started job #{result.job.pk}.", job_id=result.job.pk)
    if result.outcome == ScheduleEventType.FIRE_SKIPPED:
        return ActionResult(f"Schedule {schedule.name}: nothing started, {result.detail}.", messages.WARNING)
    return ActionResult(f"Schedule {schedule.name} {result.detail}", messages.ERROR)


def _pause(schedule: JobSchedule, user: Any) -> ActionResult:
    schedules.schedule_pause(schedule.pk, actor=user)
    return ActionResult(f"Schedule {schedule.name} paused.")


def _resume(schedule: JobSchedule, user: Any) -> ActionResult:
    resumed = schedules.schedule_resume(schedule.pk, actor=user)
    return ActionResult(f"Schedule {schedule.name} resumed: next run {humanize.when(resumed.next_run_at)}.")


def _delete(schedule: JobSchedule, user: Any) -> ActionResult:
    schedules.schedule_delete(schedule.pk, actor=user)
    return ActionResult(f"Schedule {schedule.name} deleted (its jobs and history stay).")


@dataclass(frozen=True)
class ScheduleAction:
    """An action on a schedule: its rule (`permissions.Action`, also the bulk action's `has_<action>_permission`),
    when its button shows, and its one service call."""

    name: str
    label: str
    confirm: str
    action: Action
    shown: Callable[[JobSchedule], bool]
    call: Callable[[JobSchedule, Any], ActionResult]
    danger: bool = False


ACTIONS: dict[str, ScheduleAction] = {a.name: a for a in [
    ScheduleAction("run_now", "Run now", "Start a run now (skipped while the last one is active) of",
                   Action.SCHEDULE_RUN, lambda s: True, _run_now),
    ScheduleAction("pause", "Pause", "Stop the fires of", Action.SCHEDULE_PAUSE, lambda s: s.enabled, _pause),
    ScheduleAction("resume", "Resume", "Fire again, from the next fire after now,", Action.SCHEDULE_RESUME,
                   lambda s: not s.enabled, _resume),
    ScheduleAction("delete", "Delete schedule", "Delete (its jobs and history stay)", Action.SCHEDULE_DELETE,
                   lambda s: True, _delete, danger=True),
]}


def perform(action: ScheduleAction, schedule: JobSchedule, user: Any) -> ActionResult:
    """One action on one schedule; an engine refusal becomes a message naming the schedule and why."""
    try:
        return action.call(schedule, user)
    except ScheduleNotFound:
        return ActionResult(f"Schedule {schedule.name} no longer exists.", messages.ERROR)
    except InvalidParams as exc:
        return ActionResult(f"Cannot {action.label.lower()} {schedule.name}: its params do not validate ({exc}).",
                       messages.ERROR)
    except PartitionsError as exc:  # NotPermitted included: the service checks the permission too
        return ActionResult(f"Cannot {action.label.lower()} {schedule.name}: {exc}", messages.ERROR)


def _bulk(action: ScheduleAction):
    def run(modeladmin: ScheduleAdmin, request, queryset):
        return modeladmin.bulk_action(request, queryset, action)

    run.__name__ = f"{action.name}_selected"
    return admin.action(permissions=[action.action], description=f"{action.label} (selected schedules)")(run)


class ScheduleAdmin(EngineAdmin):
    list_display = ["name", "type_name", "cadence_col", "state_col", "next_col", "last_col", "last_job_col"]
    list_filter = ["enabled", "type_name", "kind"]
    search_fields = ["name", "type_name"]
    list_select_related = ["last_job"]
    actions = [_bulk(action) for action in ACTIONS.values()]

    def has_add_permission(self, request) -> bool:
        """Add opens the start page in schedule mode: the right to create a schedule (add_jobschedule and
        start_job)."""
        return may(request.user, Action.SCHEDULE_CREATE)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:partitions_job_start") + "?mode=" + start.SCHEDULE_MODE)

    @admin.display(description="cadence")
    def cadence_col(self, s: JobSchedule):
        return schedules.cadence_of(s).describe()

    @admin.display(description="state", ordering="enabled")
    def state_col(self, s: JobSchedule):
        return "enabled" if s.enabled else format_html("paused: {}", s.paused_reason or "-")

    @admin.display(description="next run", ordering="next_run_at")
    def next_col(self, s: JobSchedule):
        return humanize.when(s.next_run_at)

    @admin.display(description="last run", ordering="last_run_at")
    def last_col(self, s: JobSchedule):
        return humanize.when(s.last_run_at)

    @admin.display(description="last job")
    def last_job_col(self, s: JobSchedule):
        if s.last_job is None:
            return "-"
        return format_html("{} {}", job_link(s.last_job.pk),
                           display.status_badge(s.last_job.pk, s.last_job.status, s.last_job.get_status_display()))

    def get_urls(self):
        return [path("<path:object_id>/action/<slug:action_name>/", self.admin_site.admin_view(self.action_view),
                     name="partitions_jobschedule_action"), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The schedule page: its settings, what it did (every fire, every operator action), its actions."""
        schedule = self.get_object(request, unquote(object_id))
        if schedule is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, schedule):
            raise PermissionDenied
        history = ScheduleEvent.objects.filter(schedule=schedule).select_related("job", "actor_user").order_by("-id")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": f"Schedule {schedule.name}",
            "schedule": schedule, "cadence": schedules.cadence_of(schedule).describe(),
            "deadline": cadences.format_offset(schedule.deadline_offset), "history": history[:HISTORY_ROWS],
            "actions": [a for a in ACTIONS.values() if may(request.user, a.action) and a.shown(schedule)],
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/partitions/jobschedule/schedule_page.html", context)

    def action_view(self, request, object_id, action_name):
        """GET (or POST without `confirm`) asks; POST with `confirm=yes` acts."""
        action, schedule = action_target(self, request, object_id, ACTIONS, action_name)
        if action is None:
            return schedule  # the refusal
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            outcome = perform(action, schedule, request.user)
            self.message_user(request, outcome.message, outcome.level)
            if action.name == "delete" and outcome.level == messages.SUCCESS:
                return HttpResponseRedirect(reverse("admin:partitions_jobschedule_changelist"))
            return HttpResponseRedirect(schedule_url(schedule.pk))
        return confirm_response(
            self, request, label=action.label, question=f"{action.confirm} this schedule?",
            items=[(f"{schedule.name} ({schedule.type_name})", schedule_url(schedule.pk))],
            hidden=[("confirm", "yes")], form_url=reverse("admin:partitions_jobschedule_action",
                                                          args=[schedule.pk, action.name]),
            back_url=schedule_url(schedule.pk), danger=action.danger)

    def bulk_action(self, request, queryset, action: ScheduleAction):
        if not may(request.user, action.action):
            raise PermissionDenied
        queryset = queryset.order_by("name")
        if request.POST.get("post") != "yes":
            pks = [] if request.POST.get("select_across") == "1" else [s.pk for s in queryset]
            return confirm_response(
                self, request, label=action.label, question=f"{action.confirm} these {queryset.count():,} schedules?",
                items=selection_items(queryset, label=lambda s: f"{s.name} ({s.type_name})",
                                      url=lambda s: schedule_url(s.pk)),
                hidden=selection_hidden(request, f"{action.name}_selected", pks),
                form_url=request.get_full_path(), back_url=request.get_full_path(), danger=action.danger)
        report(self, request, [perform(action, s, request.user) for s in queryset])
        return None
