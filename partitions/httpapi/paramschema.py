"""A job type's Params form as a JSON Schema (what `GET /api/v1/job-types` shows): each field's type, bounds,
choices, default and help, from the form's own fields, so the schema cannot drift from the validation the
start runs (which is still the form's: this schema only describes it)."""

from __future__ import annotations

from typing import Any

from django import forms

#: A field's JSON type by its form field class, the most specific first (any other field: a string).
TYPES: list[tuple[type[forms.Field], dict[str, Any]]] = [
    (forms.BooleanField, {"type": "boolean"}),
    (forms.FloatField, {"type": "number"}),  # before IntegerField: Django's FloatField is one
    (forms.DecimalField, {"type": "number"}),
    (forms.IntegerField, {"type": "integer"}),
    (forms.DateTimeField, {"type": "string", "format": "date-time"}),
    (forms.DateField, {"type": "string", "format": "date"}),
    (forms.JSONField, {}),
]


def _type_of(field: forms.Field) -> dict[str, Any]:
    if isinstance(field, forms.MultipleChoiceField):
        return {"type": "array", "items": {"enum": [str(value) for value, _ in field.choices]}}
    if isinstance(field, forms.ChoiceField):
        return {"enum": [str(value) for value, _ in field.choices]}
    return dict(next((schema for cls, schema in TYPES if isinstance(field, cls)), {"type": "string"}))


def _field_schema(field: forms.Field) -> dict[str, Any]:
    schema = _type_of(field)
    if isinstance(field, forms.RegexField):
        schema["pattern"] = field.regex.pattern
    for attr, key in (("min_value", "minimum"), ("max_value", "maximum"), ("min_length", "minLength"),
                      ("max_length", "maxLength")):
        if (value := getattr(field, attr, None)) is not None:
            schema[key] = value
    if field.initial is not None and not callable(field.initial):
        schema["default"] = field.initial
    if field.help_text:
        schema["description"] = str(field.help_text)
    if field.label:
        schema["title"] = str(field.label)
    return schema


def params_schema(form_class: type[forms.Form]) -> dict[str, Any]:
    """The JSON Schema of a Params form: an object of its fields, the required ones (without a default) named."""
    fields = form_class.base_fields
    required = [name for name, field in fields.items() if field.required and field.initial is None]
    return {"type": "object", "properties": {name: _field_schema(field) for name, field in fields.items()},
            "required": required, "additionalProperties": False}
