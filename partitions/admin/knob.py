"""The job page's time/cost knob: a POST form that changes max_parallel (and the deadline) of a live job."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect

from partitions.admin.actions import ActionResult, guarded
from partitions.admin.base import job_url
from partitions.admin.fields import DeadlineField
from partitions.core import humanize, validation
from partitions.models import Job
from partitions.operations import knob
from partitions.permissions import Action, may

KEEP, SET, CLEAR = "keep", "set", "clear"


class KnobForm(forms.Form):
    """What the operator typed; the service validates again (the last line) and writes.

    The deadline is one explicit choice: keep it, set it to the one typed, or clear it; a typed deadline with
    "keep" means "set" (typing is the intent), a typed deadline with "clear" is refused as contradictory.
    """

    max_parallel = forms.IntegerField(required=False, min_value=0, max_value=validation.MAX_PARALLEL_LIMIT,
                                      help_text="Partitions in flight at most; 0 = no cap.",
                                      widget=forms.NumberInput(attrs={"size": 6}))
    deadline_choice = forms.ChoiceField(required=False, widget=forms.RadioSelect, initial=KEEP,
                                        choices=[(KEEP, "keep"), (SET, "set to"), (CLEAR, "clear (no deadline)")])
    deadline = DeadlineField(required=False)

    def clean(self):
        cleaned = super().clean()
        choice, typed = cleaned.get("deadline_choice") or KEEP, cleaned.get("deadline")
        if choice == CLEAR and typed is not None:
            self.add_error("deadline", "Either clear the deadline or type a new one, not both.")
        elif choice == SET and typed is None and "deadline" not in self.errors:
            self.add_error("deadline", "Type the new deadline, or choose keep.")
        return cleaned


def knob_form_for(job: Job) -> KnobForm:
    form = KnobForm(initial={"max_parallel": job.max_parallel, "deadline_choice": KEEP})
    current = humanize.when(job.deadline) if job.deadline else "none"
    form.fields["deadline_choice"].choices = [(KEEP, f"keep ({current})"), (SET, "set to"),
                                              (CLEAR, "clear (no deadline)")]
    return form


def _changes(form: KnobForm) -> dict:
    data = form.cleaned_data
    changes = {}
    if data["max_parallel"] is not None:
        changes["max_parallel"] = data["max_parallel"]
    if data["deadline_choice"] == CLEAR:
        changes["deadline"] = None
    elif data["deadline"] is not None:
        changes["deadline"] = data["deadline"]
    return changes


def _first_error(form: KnobForm) -> str:
    name, errors = next(iter(form.errors.items()))
    label = form.fields[name].label or name.replace("_", " ") if name in form.fields else ""
    return f"{label.capitalize()}: {errors[0]}" if label else errors[0]


def knob_view(model_admin, request, object_id):
    """POST only (CSRF-checked by the admin): change the knob, message the outcome, go back to the job page."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    job = model_admin.get_object(request, unquote(object_id))
    if job is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not (model_admin.has_view_permission(request, job) and may(request.user, Action.KNOB)):
        raise PermissionDenied
    form = KnobForm(request.POST)
    if not form.is_valid():
        model_admin.message_user(request, f"Nothing changed for job #{job.pk}. {_first_error(form)}", messages.ERROR)
        return HttpResponseRedirect(job_url(job.pk))

    def change() -> ActionResult:
        changes = _changes(form)
        if not changes:
            return ActionResult(f"Nothing changed for job #{job.pk}: enter a max parallel or a deadline.",
                                messages.WARNING)
        updated = knob.job_set(job.pk, actor=request.user, **changes)
        cap = updated.max_parallel or "unlimited"
        deadline = humanize.when(updated.deadline) if updated.deadline else "none"
        return ActionResult(f"Job #{job.pk}: max parallel {cap}, deadline {deadline}.")

    outcome = guarded("change the settings of", job.pk, change)
    model_admin.message_user(request, outcome.message, outcome.level)
    return HttpResponseRedirect(job_url(job.pk))
