"""The failure ledger in the admin: the job page's Failures section (its context), the keyset-paginated item list,
the CSV download (streamed, one row per item) and the per-reason operator actions (retry these items, skip them
with a note: confirm page, POST + CSRF, `permissions.may` retry or skip, audited by the services with the user)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from partitions.admin.actions import ActionResult, guarded, queued_again
from partitions.admin.base import confirm_response, job_url
from partitions.core import humanize
from partitions.core.states import SUBJOB_LEDGER
from partitions.core.validation import parse_id
from partitions.models import Job
from partitions.operations import services
from partitions.permissions import Action, may
from partitions.reads import ledger


@dataclass(frozen=True)
class ReasonAction:
    """A per-reason operator action: its words, its rule (`permissions.Action`: the right and the job statuses it
    applies in), and its one service call."""

    name: str
    label: str
    verb: str
    question: str
    action: Action
    asks_note: bool = False


REASON_ACTIONS = {a.name: a for a in [
    ReasonAction("retry", "Retry these items", "retry the items of one reason of",
                 "Run again, in new retry partitions, the failed and skipped items of", Action.RETRY),
    ReasonAction("skip", "Skip with note", "skip the items of one reason of",
                 "Mark skipped, with your note, the failed items of", Action.SKIP, asks_note=True),
]}


def _url(name: str, job_id: int, **params) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return reverse(f"admin:partitions_job_{name}", args=[job_id]) + (f"?{query}" if query else "")


def _action_url(job_id: int, name: str, reason: str) -> str:
    return reverse("admin:partitions_job_failures_action", args=[job_id, name]) + "?" + urlencode({"reason": reason})


def _refusal(verb: str, job: Job, reason: str) -> ActionResult | None:
    """Why `reason` names no group of the job (UnknownReason, as a message), or None when it does."""
    def check() -> None:
        ledger.reason_check(job.pk, reason)
    return guarded(verb, job.pk, check)


def failures_context(request, job: Job) -> dict:
    """The job page's Failures section: the reason groups (one aggregate) and what the user may do with each."""
    groups = ledger.job_failure_groups(job.pk)
    allowed = {name: may(request.user, action.action, job) for name, action in REASON_ACTIONS.items()}
    rows = [{
        "g": g,
        "items_url": _url("failures", job.pk, reason=g.reason),
        "csv_url": _url("failures_csv", job.pk, reason=g.reason),
        "retry_url": _action_url(job.pk, "retry", g.reason) if allowed["retry"] else "",
        "skip_url": _action_url(job.pk, "skip", g.reason) if allowed["skip"] and g.failed else "",
    } for g in groups.groups]
    return {"ledger": groups, "ledger_rows": rows, "ledger_list_url": _url("failures", job.pk),
            "ledger_csv_url": _url("failures_csv", job.pk), "ledger_statuses": sorted(SUBJOB_LEDGER)}


def _job_for(model_admin, request, object_id) -> Job:
    job = Job.objects.filter(pk=parse_id(unquote(object_id)) or 0).first()
    if job is None:
        raise Http404("no such job")
    if not (model_admin.has_view_permission(request, job) and may(request.user, Action.VIEW_FAILURES)):
        raise PermissionDenied
    return job


def _filters(request) -> tuple[str | None, str | None]:
    """The list's and the export's filters from the query string: a bad status is no filter (as the partition
    filter's), a reason must be one the job has (checked by the caller)."""
    status = request.GET.get("status") or None
    return request.GET.get("reason") or None, status if status in SUBJOB_LEDGER else None


def failures_list_view(model_admin, request, object_id):
    """GET: one keyset page of the ledger (of one reason, or all in reason order), `?after=ID` for the next."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    job = _job_for(model_admin, request, object_id)
    reason, status = _filters(request)
    error = ""
    if reason is not None and (refused := _refusal("list the failures of", job, reason)) is not None:
        error = refused.message
    after = parse_id(request.GET.get("after"))
    items = [] if error else ledger.job_failed_items(job.pk, reason=reason, status=status, after_id=after,
                                                     limit=ledger.ITEMS_PER_PAGE + 1)
    more, items = len(items) > ledger.ITEMS_PER_PAGE, items[:ledger.ITEMS_PER_PAGE]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts, "job": job, "title": f"Job #{job.pk}: failed and skipped items",
        "items": [{"i": i, "first_seen": humanize.when(i.first_seen), "last_seen": humanize.when(i.last_seen)}
                  for i in items],
        "reason": reason, "status": status, "error": error, "statuses": sorted(SUBJOB_LEDGER),
        "groups": [g.reason for g in ledger.job_failure_groups(job.pk).groups],
        "next_url": _url("failures", job.pk, reason=reason, status=status, after=items[-1].id) if more else "",
        "first_url": _url("failures", job.pk, reason=reason, status=status) if after else "",
        "csv_url": _url("failures_csv", job.pk, reason=reason, status=status),
        "job_url": job_url(job.pk),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/failures.html", context)


def failures_csv_view(model_admin, request, object_id):
    """GET: every item of the ledger (or of one reason) as CSV, streamed page by page; one row per item."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    job = _job_for(model_admin, request, object_id)
    reason, status = _filters(request)
    if reason is not None and (refused := _refusal("export the failures of", job, reason)) is not None:
        model_admin.message_user(request, refused.message, refused.level)
        return HttpResponseRedirect(job_url(job.pk) + "#pj-failures")
    response = StreamingHttpResponse(
        ledger.csv_lines(job.pk, ledger.job_failed_items_all(job.pk, reason=reason, status=status)),
        content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-failures.csv"'
    return response


def failures_action_view(model_admin, request, object_id, action_name):
    """GET asks (a confirm page naming the reason and how many items), POST with confirm=yes acts."""
    action = REASON_ACTIONS.get(action_name)
    if action is None:
        raise Http404(f"no action {action_name!r}")
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    job = _job_for(model_admin, request, object_id)
    if not may(request.user, action.action):
        raise PermissionDenied
    data = request.POST if request.method == "POST" else request.GET
    reason = data.get("reason", "")
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        outcome = guarded(action.verb, job.pk, lambda: _perform(action, job, request.user, reason,
                                                                request.POST.get("note", "")))
        model_admin.message_user(request, outcome.message, outcome.level)
        return HttpResponseRedirect(job_url(job.pk) + "#pj-failures")
    if (refused := _refusal(action.verb, job, reason)) is not None:
        model_admin.message_user(request, refused.message, refused.level)
        return HttpResponseRedirect(job_url(job.pk) + "#pj-failures")
    items, failed = ledger.reason_counts(job.pk, reason)  # this reason's, also past the page's largest groups
    touched = items if action.name == "retry" else failed
    what = humanize.plural(touched, "item")
    return confirm_response(
        model_admin, request, label=action.label,
        question=f"{action.question} job #{job.pk} ({job.type_name}) with reason “{reason}”? This touches {what}.",
        items=[], hidden=[("confirm", "yes"), ("reason", reason)],
        form_url=reverse("admin:partitions_job_failures_action", args=[job.pk, action.name]),
        back_url=job_url(job.pk) + "#pj-failures", asks_note=action.asks_note,
        confirm_label=f"Yes, {action.label.split(' ')[0].lower()} {what}")


def _perform(action: ReasonAction, job: Job, user, reason: str, note: str) -> ActionResult:
    if action.name == "retry":
        n = services.subjobs_retry(job.pk, None, actor=user, reason=reason)
        return queued_again(job.pk, n, f"item of “{reason}”", f"items of “{reason}”")
    n = services.subjobs_skip(job.pk, reason=reason, note=note, actor=user)
    if not n:
        return ActionResult(f"Job #{job.pk} has no failed items of “{reason}” left to skip.", messages.WARNING)
    return ActionResult(f"Job #{job.pk}: {humanize.plural(n, 'failed item')} of “{reason}” skipped.")
