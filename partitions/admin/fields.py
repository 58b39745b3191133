"""Form fields every deadline input shares: a date-time in the operator's zone, or a time from now (`+30m`)."""

from __future__ import annotations

from django import forms
from django.utils.functional import lazy

from partitions.core import humanize, validation

RELATIVE_EXAMPLES = "+30m, +2h or +1d"


def _deadline_help() -> str:
    return (f"A date and time in {humanize.zone_name()} (2026-12-03 09:00) or a time from now: "
            f"{RELATIVE_EXAMPLES}.")


deadline_help = lazy(_deadline_help, str)


class DeadlineField(forms.DateTimeField):
    """`2026-12-03 09:00` (read in the operator's zone) or `+30m` / `+2h` / `+1d` from now."""

    widget = forms.TextInput

    default_error_messages = {
        "invalid": f"Enter a date and time such as 2026-12-03 09:00, or a time from now such as {RELATIVE_EXAMPLES}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", deadline_help())
        kwargs.setdefault("widget", forms.TextInput(attrs={"placeholder": "+30m or 2026-12-03 09:00",
                                                           "autocomplete": "off"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and text.startswith("+"):
            if (when := validation.relative_deadline(text)) is None:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
            return when
        return super().to_python(value)
