"""The start page: choose a job type, fill its Params form as-is, preview the plan (writes nothing) or start.

The form carries a one-time token (`start_token`): the job it starts gets the dedupe key
`start-form:<user>:<token>`, so a double click, a resubmitted page or ten concurrent POSTs of one form land on
the first job (the key's unique index settles a race; a repeat after that job ended finds it by its key).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse

from partitions.admin.base import job_url
from partitions.admin.fields import DeadlineField, deadline_help
from partitions.admin.sample import PREFIX as SAMPLE_PREFIX
from partitions.admin.sample import SampleForm, sample_submit
from partitions.admin.schedule_form import PREFIX as SCHEDULE_PREFIX
from partitions.admin.schedule_form import ScheduleForm, schedule_submit
from partitions.admin.throttle import ThrottleFields
from partitions.core import humanize, validation
from partitions.core.exceptions import InvalidParams, JobNotPlannable, JobTypeNotFound, PartitionsError, error_line
from partitions.jobtypes import registry
from partitions.jobtypes.splits import PartitionPlan
from partitions.models import Job
from partitions.notify.config import notify_choice
from partitions.operations import services
from partitions.permissions import Action, may
from partitions.reads.estimates import plan_estimate
from partitions.wording import presenters
from partitions.worker.sample_run import sample_refusal

log = logging.getLogger(__name__)

#: The job type's Params form is rendered with this prefix, so its field names never clash with ours.
PARAMS_PREFIX = "params"
#: Rows of a preview shown on the page (the totals always cover every partition).
#: The preview lists the first and the last few partitions of a plan, not all of them.
#: What a start token looks like (secrets.token_urlsafe(16)); anything else is ignored (no dedupe).
START_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def start_token(request) -> str:
    """The form's token: the one it was posted with (a page shown again keeps it), else a new one."""
    posted = request.POST.get("start_token", "") if request.method == "POST" else ""
    return posted if START_TOKEN.fullmatch(posted) else secrets.token_urlsafe(16)


class StartOptionsForm(ThrottleFields):
    """Run options that are not the job type's params (an empty throttle field: the job type's default)."""

    field_order = ["max_parallel", "deadline", "rate_limit", "pause_ms", "notify"]

    max_parallel = forms.IntegerField(
        min_value=0, max_value=validation.MAX_PARALLEL_LIMIT, required=False, initial=0, label="Max parallel",
        help_text="Partitions in flight at once; 0 = unlimited. Fewer workers cost less and take longer.",
    )
    deadline = DeadlineField(required=False)
    notify = forms.CharField(
        required=False, max_length=2000, label="Notify",
        help_text="This run's channels, comma-separated: email:ADDRESS, webhook:NAME, or none. Empty: the defaults.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rate_limit"].help_text = "Items per second across every worker; empty = the job type's default."
        self.fields["pause_ms"].help_text = "Pause after each batch; empty = the job type's default."
        self.fields["deadline"].help_text = f"Optional; the job page projects the finish against it. {deadline_help()}"

    def clean(self):
        """The same bounds the service applies (deadline range, column ranges), shown next to the fields."""
        cleaned = super().clean()
        self.add_throttle_errors(cleaned)
        try:
            options = validation.run_options(max_parallel=cleaned.get("max_parallel") or 0,
                                             deadline=cleaned.get("deadline"))
            notify_choice(self.notify_values())
        except InvalidParams as exc:
            for field, errors in exc.errors.items():
                for error in errors:
                    self.add_error(field if field in self.fields else None, error)
            return cleaned
        return {**cleaned, "max_parallel": options.max_parallel, "deadline": options.deadline}

    def notify_values(self) -> list[str]:
        return [v for v in (self.cleaned_data.get("notify") or "").split(",") if v.strip()]


def _params_data(form: forms.Form) -> dict[str, Any]:
    """The Params form's raw values under their own names, read by its own widgets from the prefixed POST.

    Fields the request did not send are left out, so the job type's defaults apply.
    """
    data = {}
    for name, field in form.fields.items():
        key = form.add_prefix(name)
        if not field.widget.value_omitted_from_data(form.data, form.files, key):
            data[name] = field.widget.value_from_datadict(form.data, form.files, key)
    return data


#: `?mode=schedule`: the start page opened to create a schedule.
SCHEDULE_MODE = "schedule"
#: The start form's submit buttons that are their own action, not a start (each its own right).
SUBMIT_ACTIONS = {"_schedule": Action.SCHEDULE_CREATE, "_sample": Action.SAMPLE}


def start_view(model_admin, request):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    if not may(request.user, Action.START):
        raise PermissionDenied
    types = registry.all_types()
    type_name = request.POST.get("job_type") or request.GET.get("type") or ""
    job_type = types.get(type_name)
    if type_name and job_type is None:
        messages.error(request, f"Unknown job type {type_name!r}.")
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Start a job",
        "types": [{"name": name, "label": t.label or name, "doc": (type(t).__doc__ or "").strip().split("\n")[0]}
                  for name, t in types.items()],
        "type_name": type_name if job_type else "",
        "job_type": job_type,
        "start_token": start_token(request),
        "can_schedule": may(request.user, Action.SCHEDULE_CREATE),
    }
    # Schedule mode (Job schedules' Add): the same form, with the schedule part open and the title saying so.
    context["schedule_mode"] = context["can_schedule"] and request.GET.get("mode") == SCHEDULE_MODE
    if context["schedule_mode"]:
        context["title"] = "Schedule a job"
    if job_type is None:
        request.current_app = model_admin.admin_site.name
        return TemplateResponse(request, "admin/partitions/job/start.html", context)
    context["sample_refused"] = sample_refusal(job_type)  # the preview says why it offers no sample

    if request.method == "POST":
        if any(button in request.POST and not may(request.user, action) for button, action in SUBMIT_ACTIONS.items()):
            raise PermissionDenied  # scheduling (O1) and sampling are actions of their own, each asked
        params_form = job_type.Params(data=request.POST, prefix=PARAMS_PREFIX)
        options = StartOptionsForm(data=request.POST)
        # Bound (and so checked) only when scheduling: a preview or a run now says nothing about a schedule.
        schedule_form = ScheduleForm(data=request.POST if "_schedule" in request.POST else None,
                                     prefix=SCHEDULE_PREFIX)
        context["sample_form"] = SampleForm(data=request.POST if "_sample" in request.POST else None,
                                            prefix=SAMPLE_PREFIX)
        response = _submit(request, type_name, params_form, options, context, schedule_form)
        if response is not None:
            return response
    else:
        params_form = job_type.Params(prefix=PARAMS_PREFIX)
        options = StartOptionsForm()
        schedule_form = ScheduleForm(prefix=SCHEDULE_PREFIX)
        context["sample_form"] = SampleForm(prefix=SAMPLE_PREFIX)
    context.update(params_form=params_form, options_form=options, schedule_form=schedule_form,
                   scheduling="_schedule" in request.POST or context["schedule_mode"],
                   media=model_admin.media + params_form.media + options.media)
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/start.html", context)


def _submit(request, type_name, params_form, options, context, schedule_form):
    """Preview, start or schedule through the services; they validate params, the page shows their errors."""
    data = _params_data(params_form)
    options.is_valid()  # its errors show on a preview too
    sampling = "_sample" in request.POST
    previewing = "_preview" in request.POST or sampling  # a sample is shown with the plan it sampled
    verb = "sample" if sampling else "preview" if previewing else "start"
    try:
        if "_schedule" in request.POST:
            return schedule_submit(request, type_name, data, params_form, options, schedule_form)
        if previewing:
            plans = services.job_preview(type_name, data)
            context["preview"] = _preview(type_name, plans, getattr(options, "cleaned_data", {}))
            params_form.is_valid()  # the service accepted the params; show the form bound, without errors
            if sampling:
                context["sample"] = sample_submit(request, type_name, data, options, context["sample_form"],
                                                  plans=plans)
            return None
        return _start(request, type_name, data, params_form, options)
    except JobNotPlannable as exc:  # job_start makes the plan-ability check (nothing was written)
        messages.error(request, f"Cannot start: the plan cannot be made ({exc.reason}); the preview says the same.")
        params_form.is_valid()
    except InvalidParams as exc:
        _show_refusal(params_form, exc)
    except JobTypeNotFound as exc:
        messages.error(request, str(exc))
    except PartitionsError as exc:
        messages.error(request, f"Cannot {verb}: {exc}")
    except Exception as exc:  # job code (split) failed during a preview: say so instead of an error page
        if not previewing:
            raise
        log.exception("%s of %s failed", verb, type_name)
        messages.error(request, f"{verb.capitalize()} failed: {error_line(exc)}")
    return None


def _show_refusal(params_form, exc: InvalidParams) -> None:
    if params_form.is_valid():  # the same form said yes here; still show what the service refused
        for field, errors in exc.errors.items():
            for error in errors:
                params_form.add_error(field if field in params_form.fields else None, error)


def _preview(type_name: str, plans: list[PartitionPlan], options: dict[str, Any]) -> dict[str, Any]:
    """The plan's counts and edges, and its estimated duration against the deadline typed (if valid)."""
    estimated, subjobs = sum(p.estimated_items for p in plans), sum(len(p.items) for p in plans)
    rate_limit = options.get("rate_limit") or registry.get(type_name).rate_limit
    estimate = plan_estimate(type_name, estimated or subjobs, rate_limit=rate_limit, deadline=options.get("deadline"))
    return {"rows": presenters.preview_rows(plans), "counts": presenters.preview_counts(plans),
            "partitions": len(plans), "estimated": estimated, "subjobs": subjobs,
            "empty": not plans or not (estimated or subjobs), "estimate": humanize.estimate(estimate)}


def _start(request, type_name: str, data: dict[str, Any], params_form, options):
    """Start the job (a redirect to its page), or None with the reason shown on the form."""
    if not options.is_valid():
        params_form.is_valid()  # show every error at once
        return None
    token = request.POST.get("start_token", "")
    key = f"start-form:{request.user.pk}:{token}" if START_TOKEN.fullmatch(token) else None
    if key and (first := Job.objects.filter(dedupe_key=key).order_by("id").first()) is not None:
        messages.info(request, f"This form was already submitted: job #{first.pk} ({first.type_name}).")
        return HttpResponseRedirect(job_url(first.pk))
    chosen = options.cleaned_data
    job, created = services.job_start(
        type_name, data, actor=request.user, max_parallel=chosen["max_parallel"] or 0, deadline=chosen["deadline"],
        rate_limit=validation.UNSET if chosen.get("rate_limit") is None else chosen["rate_limit"],
        pause_ms=validation.UNSET if chosen.get("pause_ms") is None else chosen["pause_ms"],
        notify=options.notify_values(), dedupe_key=key)
    verb = "Started" if created else "This form was already submitted:"
    messages.success(request, f"{verb} job #{job.pk} ({type_name}).")
    return HttpResponseRedirect(job_url(job.pk))
