"""Text limits: every width a text is cut to, named once, and the one way to cut it (`clip`).

Stored widths bound what a row or an event keeps; shown widths bound what a console cell shows (the whole text
stays in the cell's title). Templates cut through the `clip` filter (`{{ error|clip:"CELL" }}`), which takes
the name of a shown width below.
"""

from __future__ import annotations

ELLIPSIS = "\u2026"

# Stored -------------------------------------------------------------------------------------------------------
#: A partition's last error and traceback, as its row keeps them.
STORED_ERROR, STORED_TRACEBACK = 10_000, 50_000
#: One line of error for operators (`exceptions.error_line`): job.error, an event's error, a delivery's error.
ERROR_LINE = 500
#: A short text kept in a column or an event's data: a failure reason and a health hold's reason (both columns
#: are this wide), why a partition was split, a sub-job's error in its event, a delivery's failure.
SHORT_TEXT = 300
#: An e-mail's subject.
SUBJECT = 200

# Shown --------------------------------------------------------------------------------------------------------
#: Operator input quoted back in an error message (a name, a reason, a cron expression, a URL).
ECHO = 80
#: A sub-job's key beside its error.
KEY = 40
#: A value in a narrow column: a param's value, an item's reason.
VALUE = 60
#: A note, or a partition's last error in the partitions list.
NOTE = 80
#: A reason in a drop-down.
OPTION = 90
#: An error beside other columns: a job's error in the list, a reason's example error.
ERROR = 100
#: A reason or an error in its own column.
CELL = 120
#: An error across a wide row: a partition's on the job page, an error class's example.
LINE = 160

#: The shown widths by name, for the template filter.
SHOWN = {"ECHO": ECHO, "KEY": KEY, "VALUE": VALUE, "NOTE": NOTE, "OPTION": OPTION, "ERROR": ERROR, "CELL": CELL,
         "LINE": LINE}


def clip(text: str | None, limit: int, *, one_line: bool = False) -> str:
    """`text` in at most `limit` characters, ending in an ellipsis where it was cut; `one_line`: runs of
    whitespace (newlines too) first become one space."""
    text = text or ""
    if one_line:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
