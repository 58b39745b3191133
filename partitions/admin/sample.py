"""The start preview's "Try on a sample": the sample dry-run (partitions/worker/sample_run.py) from the start page.

It runs the job type's real code on a few planned partitions in a transaction that is rolled back, so it needs
the right to start jobs (the start page's own permission) and writes nothing, not even an audit row: it is
logged with the user instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms

from partitions.core import humanize, validation
from partitions.jobtypes.splits import PartitionPlan
from partitions.wording import presenters
from partitions.worker.sample_run import (
    SAMPLE_ITEMS_DEFAULT,
    SAMPLE_ITEMS_MAX,
    SAMPLE_PARTITIONS_MAX,
    change_text,
    job_sample,
)

log = logging.getLogger(__name__)

#: The sample form's fields are rendered with this prefix, beside the params and the run options.
PREFIX = "sample"


class SampleForm(forms.Form):
    """How much of the plan to try: partitions (spread over the plan) and items read from each."""

    partitions = forms.IntegerField(min_value=1, max_value=SAMPLE_PARTITIONS_MAX, initial=1,
                                    label="Sample partitions",
                                    help_text="Planned partitions the sample runs, spread over the plan.")
    items = forms.IntegerField(min_value=1, max_value=SAMPLE_ITEMS_MAX, initial=SAMPLE_ITEMS_DEFAULT,
                               label="Items per partition",
                               help_text="Items the sample reads from each; everything it does is rolled back.")


def sample_submit(request, type_name: str, data: dict[str, Any], options, sample_form: SampleForm, *,
                  plans: list[PartitionPlan]) -> dict | None:
    """The sample report (`SampleReport.as_dict()`, with its sentences as `words`) of the previewed `plans` at the
    chosen run options, or None
    when a form said no (its errors show on the page). Typed refusals (`SampleRefused`, `SampleFailed`) go to
    the caller."""
    if not (options.is_valid() & sample_form.is_valid()):  # both, so every error shows at once
        return None
    chosen, size = options.cleaned_data, sample_form.cleaned_data
    log.info("sample dry-run of %s by %s: %s, %s each", type_name, request.user,
             humanize.plural(size["partitions"], "partition"), humanize.plural(size["items"], "item"))
    report = job_sample(type_name, data, partitions=size["partitions"], items=size["items"],
                        max_parallel=chosen["max_parallel"] or 0, deadline=chosen["deadline"], plans=plans,
                        rate_limit=validation.UNSET if chosen.get("rate_limit") is None else chosen["rate_limit"])
    shown = report.as_dict()
    return {**shown, "words": presenters.sample_words(report),
            "changes": [{**change, "text": change_text(change)} for change in shown["changes"]]}
