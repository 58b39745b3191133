"""The throttle page of a job: its rate limit, pause and health override, changed while it runs.

GET shows the form with the job's current values; POST (CSRF, the throttle's right) validates it and calls
`services.job_throttle`, which checks the same bounds again, writes the change and its event with the user.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse

from partitions.admin.actions import ActionResult, guarded
from partitions.admin.base import job_url
from partitions.core import validation
from partitions.models import Job
from partitions.operations import services
from partitions.permissions import Action, may


class ThrottleFields(forms.Form):
    """A rate limit and a pause, bounded as the service bounds them (also part of the start page's options)."""

    rate_limit = forms.FloatField(
        required=False, min_value=validation.RATE_LIMIT_MIN, max_value=validation.RATE_LIMIT_MAX,
        label="Rate limit", help_text="Items per second across every worker; empty = no limit.",
        error_messages={"min_value": "At least 1 item per hour (0.00028 items per second).",
                        "max_value": f"At most {validation.RATE_LIMIT_MAX:,.0f} items per second."})
    pause_ms = forms.IntegerField(
        required=False, min_value=0, max_value=validation.PAUSE_MS_MAX, label="Pause after each batch (ms)",
        help_text="Gives the database room between batches; 0 = none.")

    def add_throttle_errors(self, cleaned: dict) -> None:
        """The service's own check, shown next to the fields (a NaN or inf passes FloatField's bounds)."""
        errors = validation.throttle_errors(cleaned.get("rate_limit"), cleaned.get("pause_ms") or 0)
        for field, messages_ in errors.items():
            for message in messages_:
                self.add_error(field, message)


class ThrottleForm(ThrottleFields):
    ignore_health = forms.BooleanField(
        required=False, label="Ignore health checks",
        help_text="Run even while replication lag, a long transaction or the job type's own check says wait.")

    def clean(self):
        cleaned = super().clean()
        self.add_throttle_errors(cleaned)
        return cleaned


def throttle_view(model_admin, request, object_id):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    job = model_admin.get_object(request, unquote(object_id))
    if job is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not (model_admin.has_view_permission(request, job) and may(request.user, Action.THROTTLE)):
        raise PermissionDenied
    form = ThrottleForm(request.POST if request.method == "POST" else None, initial={
        "rate_limit": job.rate_limit, "pause_ms": job.pause_ms, "ignore_health": job.ignore_health})
    if request.method == "POST" and form.is_valid():
        outcome = _apply(job, request.user, form)
        model_admin.message_user(request, outcome.message, outcome.level)
        return HttpResponseRedirect(job_url(job.pk))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts, "title": f"Throttle job #{job.pk}: {job.type_name}", "job": job, "form": form,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/throttle.html", context)


def _apply(job: Job, user, form: ThrottleForm) -> ActionResult:
    data = form.cleaned_data

    def call() -> ActionResult:
        services.job_throttle(job.pk, actor=user, rate_limit=data["rate_limit"], pause_ms=data["pause_ms"] or 0,
                              ignore_health=data["ignore_health"])
        return ActionResult(f"Job #{job.pk}: throttle changed; running partitions follow it at their next batch.")

    return guarded("throttle", job.pk, call)
