"""The job page: header with progress/ETA/deadline, throughput chart, partitions, failures by reason, timeline;
and its live poll, which re-renders every section from the same context.

Bounded work whatever the job's size: one aggregate for progress, the partition
page's total taken from that aggregate, keyset pagination for the timeline, and
every table sliced to one page.
"""

from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse

from partitions.admin import display
from partitions.admin.actions import ACTIONS, job_controls
from partitions.admin.base import KnownCountPaginator, changelist_url
from partitions.admin.failures import failures_context
from partitions.admin.knob import knob_form_for
from partitions.core import humanize
from partitions.core.limits import LINE, VALUE, clip
from partitions.core.states import JobStatus, PartitionStatus
from partitions.core.validation import parse_id
from partitions.jobtypes import registry
from partitions.models import Job
from partitions.notify.config import plan_for
from partitions.operations.deadline_alerts import WATCH_KEY
from partitions.permissions import Action, may
from partitions.reads.grid import job_partition_grid, parse_seq_range
from partitions.reads.pages import job_deliveries, job_events, job_partitions
from partitions.reads.statistics import job_run_statistics, job_stats, job_throughput_series

PARTITIONS_PER_PAGE = 50
EVENTS_PER_PAGE = 50
DELIVERIES_SHOWN = 50
#: The page's sections below the header, in order, with their anchors; templates under
#: admin/partitions/job/sections/. The live poll re-renders these, the facts and the summary.
PAGE_SECTIONS = (("chart", "pj-throughput"), ("grid", "pj-grid"),
                 ("partitions", "pj-partitions"), ("failures", "pj-failures"),
                 ("timeline", "pj-timeline"), ("notifications", "pj-notifications"), ("statistics", "pj-statistics"))
SECTIONS = ("facts", "summary", *(name for name, _ in PAGE_SECTIONS))


def _seconds(later, earlier) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def _checkpoint(value) -> str:
    if value is None:
        return ""
    return clip(", ".join(map(str, value)) if isinstance(value, list) else str(value), VALUE, one_line=True)


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
            "error": clip(p.last_error, LINE, one_line=True),
        })
    return rows


def _channels_text(job: Job) -> str:
    """Where this job's notifications go, in words ("" when nowhere)."""
    plan = plan_for(job, registry.all_types().get(job.type_name))
    parts = ([f"e-mail to {', '.join(plan.email)}"] if plan.email else []) + [
        f"webhook {hook.name}" for hook in plan.webhooks]
    return "; ".join(parts)


def _job_for(model_admin, request, object_id) -> Job | None:
    job = Job.objects.select_related("created_by").filter(pk=parse_id(unquote(object_id)) or 0).first()
    if job is not None and not model_admin.has_view_permission(request, job):
        raise PermissionDenied
    return job


def job_context(model_admin, request, job: Job) -> dict:
    """Everything the page and its live poll show, from one read of the job's stats (bounded queries)."""
    stats = job_stats(job)
    counts = stats.progress.partitions

    status = request.GET.get("pstatus", "")
    status = status if status in PartitionStatus.values else ""
    total = counts.get(status, 0) if status else stats.progress.partitions_total
    seqs = parse_seq_range(request.GET.get("pseq"))  # a grid cell's partitions (a bounded COUNT over the seq index)
    rows = job_partitions(job.pk, status=status or None)
    partitions = (Paginator(rows.filter(seq__range=seqs), PARTITIONS_PER_PAGE) if seqs else
                  KnownCountPaginator(rows, PARTITIONS_PER_PAGE, count=total)).get_page(request.GET.get("pp"))
    grid = job_partition_grid(job.pk, total=stats.progress.partitions_total, selected=seqs)

    before = parse_id(request.GET.get("ebefore"))
    events = job_events(job.pk, before_id=before, limit=EVENTS_PER_PAGE)
    older = events[EVENTS_PER_PAGE - 1].pk if len(events) > EVENTS_PER_PAGE else None
    events = [{"e": e, "data": humanize.changes(e.data)} for e in events[:EVENTS_PER_PAGE]]

    ended = job.finished_at or (job.paused_at if job.status == JobStatus.PAUSED else None) or stats.now
    points = job_throughput_series(
        job.pk, start=(job.planned_at, 0, 0) if job.planned_at else None,
        end=(ended, stats.handled, stats.progress.live_leases) if job.planned_at else None)
    return {
        "opts": model_admin.opts,
        "job": job,
        "stats": stats,
        "fields": display.live_fields(stats),
        "status_badge": display.status_badge(job.pk, job.status, job.get_status_display()),
        "progress_bar": display.progress_bar(stats),
        "chart": display.throughput_svg(points),
        "started": humanize.when(job.started_at),
        "created": humanize.when(job.created_at),
        "created_by": humanize.actor("", job.created_by) if job.created_by else "",
        "deadline": humanize.when(job.deadline) if job.deadline else "",
        "params_items": sorted((job.params or {}).items()),
        # The finalize step's summary and the rest of the stored stats, as rows of a small table.
        "summary_rows": humanize.rows((job.stats or {}).get("summary")),
        "stats_rows": humanize.rows(job.stats, skip=("summary", WATCH_KEY)),
        "zone": humanize.zone_name(),
        # Every control the user may ever use here is in the page, hidden unless `controls` shows it now.
        "actions": [a for a in ACTIONS.values() if may(request.user, a.action)],
        "controls": job_controls(request.user, stats),
        "may_throttle": may(request.user, Action.THROTTLE),
        "splits": grid.splits,
        "grid": grid,
        "seq_filter": seqs,
        "knob_form": knob_form_for(job) if may(request.user, Action.KNOB) else None,
        "status_filter": status,
        "status_choices": [(s, counts.get(s, 0)) for s in display.PARTITION_ORDER],
        "partitions_total": stats.progress.partitions_total,
        "partitions": partitions,
        "partition_rows": _partition_rows(partitions),
        **failures_context(request, job),
        "events": events,
        "events_older": older,
        "events_newest": before is not None,
        "deliveries": job_deliveries(job.pk, limit=DELIVERIES_SHOWN),
        "notify_channels": _channels_text(job),
        "run": job_run_statistics(job, points=points, stats=stats),
        "links": {
            "partitions": changelist_url("partition", job=job.pk),
            "events": changelist_url("jobevent", job=job.pk),
        },
    }


def job_page_view(model_admin, request, object_id):
    """GET only: the page watches and links to the actions; it never writes."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    job = _job_for(model_admin, request, object_id)
    if job is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    context = {
        **model_admin.admin_site.each_context(request),
        **job_context(model_admin, request, job),
        "title": f"Job #{job.pk}: {job.type_name}",
        "page_sections": PAGE_SECTIONS,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/job_page.html", context)


def job_live_view(model_admin, request, object_id):
    """The job page's poll: its live fields and every section, rendered from the same context as the page (same
    query string: the partition filter and the pages the operator is on)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    job = _job_for(model_admin, request, object_id)
    if job is None:
        raise Http404("no such job")
    context = job_context(model_admin, request, job)
    request.current_app = model_admin.admin_site.name
    sections = {name: render_to_string(f"admin/partitions/job/sections/{name}.html", context, request)
                for name in SECTIONS}
    return JsonResponse({"job": display.live_payload(context["stats"], controls=context["controls"]),
                         "sections": sections})
