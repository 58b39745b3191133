"""Partition, sub-job and event lists: read-only, filterable by status and job, with actions on a selection."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from partitions.admin.actions import ActionResult, guarded, queued_again
from partitions.admin.base import (
    EngineAdmin,
    JobFilter,
    confirm_response,
    job_link,
    report,
    selection_hidden,
    selection_items,
)
from partitions.core import humanize
from partitions.core.limits import ERROR, NOTE, clip
from partitions.models import JobEvent, Partition, SubJob
from partitions.operations import services
from partitions.permissions import Action, may
from partitions.reads.pages import partitions_failed_subjob_ids


def _confirm_selection(model_admin, request, queryset, *, name: str, label: str, question: str):
    """Confirm page for a selection; returns None once the user confirmed (`post=yes`)."""
    if not may(request.user, Action.RETRY):  # each of these actions retries failed work
        raise PermissionDenied
    if request.POST.get("post") == "yes":
        return None
    pks = [] if request.POST.get("select_across") == "1" else list(queryset.values_list("pk", flat=True))
    return confirm_response(model_admin, request, label=label, question=question, items=selection_items(queryset),
                            hidden=selection_hidden(request, name, pks), form_url=request.get_full_path(),
                            back_url=request.get_full_path())


def _retry_subjobs(request, grouped: dict[int, list[int]]) -> list[ActionResult]:
    def one(job_id: int, ids: list[int]) -> ActionResult:
        n = services.subjobs_retry(job_id, ids, actor=request.user)
        return queued_again(job_id, n, "failed sub-job") if n else ActionResult(
            f"Job #{job_id}: none of the selected sub-jobs had failed.", level=messages.WARNING)

    return [guarded("retry the failed sub-jobs of", job_id, lambda j=job_id, i=ids: one(j, i))
            for job_id, ids in sorted(grouped.items())]


@admin.register(Partition)
class PartitionAdmin(EngineAdmin):
    list_display = ["id", "job_col", "seq", "kind", "status", "bounds_col", "checkpoint", "estimated_items",
                    "done_items", "failed_items", "skipped_items", "batch_size", "attempts_col", "lease_owner",
                    "lease_expires_at", "error_col"]
    list_filter = ["status", "kind", JobFilter]
    search_fields = ["=id", "lease_owner"]
    show_full_result_count = False
    actions = ["retry_subjobs_selected", "retry_failed_selected"]
    operator_only_fields = ("last_traceback",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("last_traceback", "scope")

    @admin.display(description="job", ordering="job_id")
    def job_col(self, obj: Partition):
        return job_link(obj.job_id)

    @admin.display(description="bounds")
    def bounds_col(self, obj: Partition):
        return obj.bounds_display

    @admin.display(description="attempts")
    def attempts_col(self, obj: Partition):
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="last error")
    def error_col(self, obj: Partition):
        return clip(obj.last_error, NOTE, one_line=True)

    @admin.action(permissions=[Action.RETRY], description="Retry the failed sub-jobs of the selected partitions")
    def retry_subjobs_selected(self, request, queryset):
        name = "retry_subjobs_selected"
        confirm = _confirm_selection(self, request, queryset, name=name, label="Retry failed sub-jobs",
                                     question="Run the failed sub-jobs of these partitions again?")
        if confirm is not None:
            return confirm
        grouped = partitions_failed_subjob_ids(list(queryset.values_list("pk", flat=True)))
        report(self, request, _retry_subjobs(request, grouped))
        return None

    @admin.action(permissions=[Action.RETRY], description="Retry the selected failed partitions")
    def retry_failed_selected(self, request, queryset):
        confirm = _confirm_selection(
            self, request, queryset, name="retry_failed_selected", label="Retry failed partitions",
            question="Put the selected failed partitions back to pending with fresh attempts?")
        if confirm is not None:
            return confirm
        grouped: dict[int, list[int]] = {}
        for pk, job_id in queryset.filter(status="failed").values_list("pk", "job_id"):
            grouped.setdefault(job_id, []).append(pk)

        def one(job_id: int, ids: list[int]) -> ActionResult:
            n = services.job_retry_failed(job_id, ids, actor=request.user)
            return queued_again(job_id, n, "failed partition")

        outcomes = [guarded("retry failed partitions of", j, lambda j=j, i=i: one(j, i))
                    for j, i in sorted(grouped.items())]
        report(self, request, outcomes or [ActionResult("None of the selected partitions had failed.",
                                                   level=messages.WARNING)])
        return None


@admin.register(SubJob)
class SubJobAdmin(EngineAdmin):
    list_display = ["id", "job_col", "partition_id", "seq", "key", "status", "attempts", "error_col", "duration_ms",
                    "finished_at"]
    list_filter = ["status", JobFilter]
    search_fields = ["=id", "key"]
    show_full_result_count = False
    actions = ["retry_selected"]
    operator_only_fields = ("traceback",)

    @admin.display(description="job", ordering="job_id")
    def job_col(self, obj: SubJob):
        return job_link(obj.job_id)

    @admin.display(description="error")
    def error_col(self, obj: SubJob):
        return clip(obj.error, ERROR, one_line=True)

    @admin.action(permissions=[Action.RETRY], description="Retry the selected failed sub-jobs")
    def retry_selected(self, request, queryset):
        confirm = _confirm_selection(self, request, queryset, name="retry_selected", label="Retry failed sub-jobs",
                                     question="Run these sub-jobs again (only failed or skipped ones move)?")
        if confirm is not None:
            return confirm
        grouped: dict[int, list[int]] = {}
        for job_id, pk in queryset.values_list("job_id", "pk").order_by("job_id", "pk"):
            grouped.setdefault(job_id, []).append(pk)
        report(self, request, _retry_subjobs(request, grouped))
        return None


@admin.register(JobEvent)
class JobEventAdmin(EngineAdmin):
    list_display = ["id", "created_col", "job_col", "type_col", "actor_col", "partition_id", "data_col"]
    list_filter = [JobFilter]
    search_fields = ["=type", "actor"]
    show_full_result_count = False
    list_select_related = ["actor_user"]

    @admin.display(description="at", ordering="created_at")
    def created_col(self, obj: JobEvent):
        return humanize.when(obj.created_at)

    @admin.display(description="type", ordering="type")
    def type_col(self, obj: JobEvent):
        return obj.type  # the type itself, as the timeline and the CLI show it (not its label: when it is written)

    @admin.display(description="actor", ordering="actor")
    def actor_col(self, obj: JobEvent):
        return humanize.actor(obj.actor, obj.actor_user)

    @admin.display(description="job", ordering="job_id")
    def job_col(self, obj: JobEvent):
        return job_link(obj.job_id)

    @admin.display(description="data")
    def data_col(self, obj: JobEvent):
        return humanize.changes(obj.data)
