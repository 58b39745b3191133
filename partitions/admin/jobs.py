"""The job list (progress, throughput, ETA; live refresh), its bulk actions, and the job URLs."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html

from partitions.admin import display, failures, job_page, knob, start, throttle, workers
from partitions.admin.actions import ACTIONS, JobAction, perform
from partitions.admin.base import (
    EngineAdmin,
    action_target,
    confirm_response,
    job_url,
    report,
    selection_hidden,
    selection_items,
)
from partitions.core import humanize
from partitions.core.validation import parse_id
from partitions.models import Job
from partitions.permissions import Action, may
from partitions.reads.statistics import JobStats, job_stats, jobs_stats
from partitions.wording import presenters

#: Most jobs one progress poll may ask about.
MAX_POLL_IDS = 200


class JobChangeList(ChangeList):
    """Attaches the page's stats to its jobs: one aggregate for the whole page, never one per row."""

    def get_results(self, request):
        super().get_results(request)
        jobs = list(self.result_list)
        stats = jobs_stats(jobs)
        for job in jobs:
            job.live = stats[job.pk]
        self.any_active = any(not job.is_terminal for job in jobs)


def _bulk(action: JobAction):
    def run(modeladmin: JobAdmin, request, queryset):
        return modeladmin.bulk_action(request, queryset, action)

    run.__name__ = f"{action.name}_selected"
    return admin.action(permissions=[action.action], description=f"{action.label} (selected jobs)")(run)


def _stats(job: Job) -> JobStats:
    live = getattr(job, "live", None)
    return live if live is not None else job_stats(job)


class JobAdmin(EngineAdmin):
    list_display = ["id", "type_col", "status_col", "progress_col", "rate_col", "eta_col", "started_col",
                    "duration_col", "failures_col"]
    list_display_links = ["id", "type_col"]
    list_filter = ["status", "type_name", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["=id", "type_name", "=dedupe_key"]
    ordering = ["-id"]
    list_per_page = 50
    actions = [_bulk(action) for action in ACTIONS.values()]
    change_list_template = "admin/partitions/job/change_list.html"

    class Media:
        js = ["partitions/progress.js"]

    def get_changelist(self, request, **kwargs):
        return JobChangeList

    # Columns ---------------------------------------------------------------------------------------

    @admin.display(description="type", ordering="type_name")
    def type_col(self, job: Job):
        return job.type_name

    @admin.display(description="status", ordering="status")
    def status_col(self, job: Job):
        return display.status_badge(job.pk, job.status, job.get_status_display())

    @admin.display(description="progress")
    def progress_col(self, job: Job):
        return display.progress_bar(_stats(job))

    @admin.display(description="throughput")
    def rate_col(self, job: Job):
        return display.live_text(job.pk, "rate", presenters.rate_text(_stats(job)))

    @admin.display(description="ETA")
    def eta_col(self, job: Job):
        return display.live_text(job.pk, "eta", display.fmt_eta(_stats(job)))

    @admin.display(description="started", ordering="started_at")
    def started_col(self, job: Job):
        return format_html('<span class="pj-when" title="{}">{}</span>', humanize.when(job.started_at),
                           humanize.when_compact(job.started_at))

    @admin.display(description="duration")
    def duration_col(self, job: Job):
        return display.live_text(job.pk, "duration", display.fmt_duration(_stats(job).elapsed_seconds))

    @admin.display(description="failures")
    def failures_col(self, job: Job):
        return display.live_text(job.pk, "failures", display.failures_text(_stats(job)))

    # Pages -----------------------------------------------------------------------------------------

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(view)

        return [
            path("start/", wrap(self.start_view), name="partitions_job_start"),
            path("workers/", wrap(self.workers_view), name="partitions_job_workers"),
            path("progress.json", wrap(self.progress_view), name="partitions_job_progress"),
            path("<path:object_id>/action/<slug:action_name>/", wrap(self.action_view), name="partitions_job_action"),
            path("<path:object_id>/throttle/", wrap(self.throttle_view), name="partitions_job_throttle"),
            path("<path:object_id>/live.json", wrap(self.live_view), name="partitions_job_live"),
            path("<path:object_id>/settings/", wrap(self.knob_view), name="partitions_job_knob"),
            path("<path:object_id>/failures/", wrap(self.failures_view), name="partitions_job_failures"),
            path("<path:object_id>/failures.csv", wrap(self.failures_csv_view), name="partitions_job_failures_csv"),
            path("<path:object_id>/failures/<slug:action_name>/", wrap(self.failures_action_view),
                 name="partitions_job_failures_action"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra = {"can_start": may(request.user, Action.START), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job page replaces the generic form: there is nothing to edit, everything to watch."""
        return job_page.job_page_view(self, request, object_id)

    def live_view(self, request, object_id):
        return job_page.job_live_view(self, request, object_id)

    def knob_view(self, request, object_id):
        return knob.knob_view(self, request, object_id)

    def failures_view(self, request, object_id):
        return failures.failures_list_view(self, request, object_id)

    def failures_csv_view(self, request, object_id):
        return failures.failures_csv_view(self, request, object_id)

    def failures_action_view(self, request, object_id, action_name):
        return failures.failures_action_view(self, request, object_id, action_name)

    def start_view(self, request):
        return start.start_view(self, request)

    def throttle_view(self, request, object_id):
        return throttle.throttle_view(self, request, object_id)

    def workers_view(self, request):
        return workers.workers_view(self, request)

    def progress_view(self, request):
        """Per-job progress, status and ETA for the polling script: `progress.json?ids=1,2,3`."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = sorted({i for x in request.GET.get("ids", "").split(",") if (i := parse_id(x)) is not None})
        ids = ids[:MAX_POLL_IDS]
        jobs = list(Job.objects.filter(pk__in=ids)) if ids else []
        stats = jobs_stats(jobs)
        return JsonResponse({
            "jobs": {str(pk): display.live_payload(s) for pk, s in stats.items()},
            "active": any(not s.job.is_terminal for s in stats.values()),
        })

    # Actions ---------------------------------------------------------------------------------------

    def action_view(self, request, object_id, action_name):
        """One action on one job: GET (or POST without `confirm`) asks, POST with `confirm=yes` acts."""
        action, job = action_target(self, request, object_id, ACTIONS, action_name)
        if action is None:
            return job  # the refusal
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            outcome = perform(action, job, request.user, reason=request.POST.get("reason", ""))
            self.message_user(request, outcome.message, outcome.level)
            return HttpResponseRedirect(job_url(outcome.job_id or job.pk))
        return self._confirm(request, action, Job.objects.filter(pk=job.pk), bulk=False)

    def bulk_action(self, request, queryset, action: JobAction):
        """A changelist action: confirm first (like delete_selected), then one service call per job."""
        if not may(request.user, action.action):  # get_actions filtered it already; belt and braces
            raise PermissionDenied
        queryset = queryset.order_by("id")
        if request.POST.get("post") != "yes":
            return self._confirm(request, action, queryset, bulk=True)
        reason = request.POST.get("reason", "")
        report(self, request, [perform(action, job, request.user, reason=reason) for job in queryset])
        return None

    def _confirm(self, request, action: JobAction, jobs, *, bulk: bool):
        items = selection_items(jobs, shown=100, label=lambda j: f"#{j.pk} {j.type_name} ({j.get_status_display()})",
                                url=lambda j: job_url(j.pk))
        if bulk:
            pks = [] if request.POST.get("select_across") == "1" else [job.pk for job in jobs]
            hidden = selection_hidden(request, f"{action.name}_selected", pks)
            form_url = back_url = request.get_full_path()
        else:
            job = jobs[0]
            hidden = [("confirm", "yes")]
            form_url = reverse("admin:partitions_job_action", args=[job.pk, action.name])
            back_url = job_url(job.pk)
        # With "select all N matching the filter" the count is the whole filtered list, not the page.
        question = f"{action.confirm} {f'these {jobs.count():,} jobs' if bulk else 'this job'}?"
        touched = action.touches(jobs[0]) if action.touches and not bulk else ""
        if touched:
            question += f" This touches {touched}."
        confirm_label = f"Yes, {action.verb.split(' the ')[0]} {touched}" if touched else None
        return confirm_response(self, request, label=action.label, question=question, items=items, hidden=hidden,
                                form_url=form_url, back_url=back_url, asks_reason=action.asks_reason,
                                danger=action.danger, confirm_label=confirm_label)
