"""What a failed or skipped item's reason is: the one rule behind the failure ledger's groups.

A reason is the error class and the message with its varying parts replaced: UUIDs by `<uuid>`, long hex
tokens (hashes, ids) by `<hex>` and every run of ASCII digits by `<n>`, whitespace collapsed, at most
REASON_MAX_LENGTH characters. So `ValueError: customer 4711 has no address` and `… customer 12 …` fall in
one group, `ValueError: customer <n> has no address`, while a `KeyError` of the same words is a group of its
own. Quoted words stay as they are: a message that names a value in words groups per value (raise an error
whose message does not, or a class of its own, to group them). An item skipped by job code (`SkipItem`) has
the class `SkipItem` and its reason's words. Pure functions: the worker calls them per failed item, with no
query (the reason is written by the checkpoint's one bulk statement).
"""

from __future__ import annotations

import re

from partitions.core.exceptions import SkipItem
from partitions.core.limits import clip

#: Longest stored reason (the column's size); a longer one is cut with an ellipsis.
REASON_MAX_LENGTH = 300
#: Longest stored error class name.
ERROR_CLASS_MAX_LENGTH = 200

_VARYING = (
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"[0-9]+"), "<n>"),
)


def normalised(message: str) -> str:
    """A message with its varying parts (UUIDs, hex tokens, numbers) replaced and its whitespace collapsed."""
    text = " ".join(message.replace("\x00", "").split())
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return text


def reason_of(error_class: str, message: str) -> str:
    """`Class: normalised message`, or the class alone when there is no message."""
    words = normalised(message)
    return clip(f"{error_class}: {words}" if words else error_class, REASON_MAX_LENGTH)


def failure_of(error: BaseException) -> tuple[str, str]:
    """(error class, reason) of what an item raised; SkipItem's class is `SkipItem`, its message the reason
    job code gave."""
    error_class = clip(type(error).__name__, ERROR_CLASS_MAX_LENGTH)
    message = error.reason if isinstance(error, SkipItem) else str(error)
    return error_class, reason_of(error_class, str(message))
