"""The job page: header with progress/ETA/deadline, throughput chart, partitions, failed sub-jobs, timeline.

Bounded work whatever the job's size: one aggregate for progress, the partition
page's total taken from that aggregate, keyset pagination for the timeline, and
every table sliced to one page.
"""

from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse

from partitions.admin import display
from partitions.admin.actions import OPERATE, visible_actions
from partitions.admin.base import KnownCountPaginator, as_json, changelist_url, short
from partitions.models import Job
from partitions.selectors import (
    job_events,
    job_failed_subjobs,
    job_partitions,
    job_splits,
    job_stats,
    job_throughput_series,
)
from partitions.states import PartitionStatus
from partitions.validation import parse_id

PARTITIONS_PER_PAGE = 50
SUBJOBS_PER_PAGE = 25
EVENTS_PER_PAGE = 50


def _seconds(later, earlier) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def _checkpoint(value) -> str:
    if value is None:
        return ""
    return short(", ".join(map(str, value)) if isinstance(value, list) else str(value), 60)


def _partition_rows(page) -> list[dict]:
    """Table rows; lease age and time since checkpoint are measured on the database clock (`db_now`)."""
    rows = []
    for p in page.object_list:
        running = p.status == PartitionStatus.RUNNING
        rows.append({
            "p": p,
            "bounds": p.bounds_display,
            "checkpoint": _checkpoint(p.checkpoint),
            "lease_age": display.fmt_duration(_seconds(p.db_now, p.lease_claimed_at)) if running else "",
            "since_checkpoint": (display.fmt_duration(_seconds(p.db_now, p.checkpointed_at or p.lease_claimed_at))
                                 if running else ""),
            "error": short(p.last_error, 160),
        })
    return rows


def job_page_view(model_admin, request, object_id):
    """GET only: the page watches and links to the actions; it never writes."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    job = Job.objects.select_related("created_by").filter(pk=parse_id(unquote(object_id)) or 0).first()
    if job is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not model_admin.has_view_permission(request, job):
        raise PermissionDenied
    stats = job_stats(job)
    counts = stats.progress.partitions

    status = request.GET.get("pstatus", "")
    status = status if status in PartitionStatus.values else ""
    total = counts.get(status, 0) if status else stats.progress.partitions_total
    partitions = KnownCountPaginator(job_partitions(job.pk, status=status or None), PARTITIONS_PER_PAGE,
                                     count=total).get_page(request.GET.get("pp"))

    failed = Paginator(job_failed_subjobs(job.pk), SUBJOBS_PER_PAGE).get_page(request.GET.get("sp"))

    before = parse_id(request.GET.get("ebefore"))
    events = job_events(job.pk, before_id=before, limit=EVENTS_PER_PAGE)
    older = events[EVENTS_PER_PAGE - 1].pk if len(events) > EVENTS_PER_PAGE else None
    events = [{"e": e, "data": short(as_json(e.data).replace("\n", " "), 200) if e.data else ""}
              for e in events[:EVENTS_PER_PAGE]]

    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"Job #{job.pk}: {job.type_name}",
        "job": job,
        "stats": stats,
        "fields": display.live_fields(stats),
        "status_badge": display.status_badge(job.pk, job.status, job.get_status_display()),
        "progress_bar": display.progress_bar(stats),
        "chart": display.throughput_svg(job_throughput_series(job.pk)),
        "started": display.fmt_dt(job.started_at),
        "created": display.fmt_dt(job.created_at),
        "deadline": display.fmt_dt(job.deadline) if job.deadline else "",
        "params_items": sorted((job.params or {}).items()),
        "stats_json": as_json(job.stats) if job.stats else "",
        "summary_json": as_json(summary) if (summary := (job.stats or {}).get("summary")) else "",
        "actions": visible_actions(request.user, job),
        "can_throttle": request.user.has_perm(OPERATE) and not job.is_terminal,
        "splits": job_splits(job.pk),
        "status_filter": status,
        "status_choices": [(s, counts.get(s, 0)) for s in display.PARTITION_ORDER],
        "partitions_total": stats.progress.partitions_total,
        "partitions": partitions,
        "partition_rows": _partition_rows(partitions),
        "failed": failed,
        "events": events,
        "events_older": older,
        "events_newest": before is not None,
        "links": {
            "partitions": changelist_url("partition", job=job.pk),
            "failed_subjobs": changelist_url("subjob", job=job.pk, status__exact="failed"),
            "events": changelist_url("jobevent", job=job.pk),
        },
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/job_page.html", context)

