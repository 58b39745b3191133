"""One encoding for everything the engine stores as JSON: the models' JSONFields (`encoder=EngineJSONEncoder`)
and the JSON text its raw SQL sends (`dumps`). Dates and times become ISO 8601, decimals and UUIDs strings
(Django's encoder); anything else, such as an object job code returned as an item's result, its str()."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class EngineJSONEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return str(o)


_ENCODER = EngineJSONEncoder()  # one instance: json.dumps(cls=…) would build one per call (a plan dumps every item)


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of `value`, as the engine stores it."""
    if kwargs:
        return json.dumps(value, cls=EngineJSONEncoder, **kwargs)
    return _ENCODER.encode(value)


def to_json(value: Any) -> Any:
    """`value` as plain JSON data (what storing and reading it back gives: datetimes become ISO strings)."""
    return json.loads(dumps(value))
