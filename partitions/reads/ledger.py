"""The item failure ledger: a job's failed and skipped items (sub-jobs), grouped by reason, listed and exported.

A reason is `partitions.jobtypes.reasons`' rule (error class + normalised message), written with each outcome. Every
read is bounded whatever the number of items: the groups are one index-only aggregate
(`subjob_failure_reason_idx`), the item list is keyset-paginated on (reason, id), and the export walks the
same pages, so nothing holds more than one page in memory and no read counts the items one more time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q

from partitions.core.exceptions import UnknownReason
from partitions.core.states import SUBJOB_LEDGER, SubJobStatus
from partitions.engine.sql import queries
from partitions.jobtypes.reasons import REASON_MAX_LENGTH
from partitions.models import SubJob

#: Groups one read returns (the largest first); the rest are counted, not listed.
GROUPS_SHOWN = 50
#: Items on one page of the list, and the export's page.
ITEMS_PER_PAGE = 50
EXPORT_PAGE = 2_000
#: The export's columns, one row per failed or skipped item.
CSV_COLUMNS = ("job", "key", "status", "reason", "error_class", "message", "attempts", "first_seen", "last_seen",
               "partition", "note")
#: A cell starting with one of these is read as a formula by spreadsheets: the export prefixes it with "'".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FailureGroup:
    """One reason of a job's failures: how many items, how many of them failed (the rest were skipped), its
    share of the ledger, the first example (lowest id) and when items of it were first and last seen."""

    reason: str
    count: int
    failed: int
    share: float
    example_key: str
    example_error: str
    error_class: str
    first_seen: datetime | None
    last_seen: datetime | None

    @property
    def skipped(self) -> int:
        return self.count - self.failed


@dataclass(frozen=True)
class FailureGroups:
    """The largest groups of a job's ledger, and the totals over all of them (from the same aggregate)."""

    groups: list[FailureGroup]
    total: int
    reasons: int

    @property
    def more(self) -> int:
        """Reasons not listed (beyond the largest GROUPS_SHOWN)."""
        return self.reasons - len(self.groups)


@dataclass(frozen=True)
class FailedItem:
    """One row of the ledger."""

    id: int
    key: str
    status: str
    attempts: int
    error_class: str
    reason: str
    error: str
    first_seen: datetime | None
    last_seen: datetime | None
    partition_id: int
    note: str


def job_failure_groups(job_id: int, *, limit: int = GROUPS_SHOWN) -> FailureGroups:
    """A job's failed and skipped items grouped by reason, the largest `limit` groups first (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(queries["job_failure_groups"], {"job_id": job_id, "limit": limit})
        rows = cursor.fetchall()
    if not rows:
        return FailureGroups(groups=[], total=0, reasons=0)
    total, reasons = int(rows[0][5]), int(rows[0][6])
    groups = [FailureGroup(reason=reason, count=n, failed=failed, share=n / total, example_key=key,
                           example_error=error, error_class=error_class, first_seen=first, last_seen=last)
              for reason, n, failed, first, last, _, _, key, error, error_class in rows]
    return FailureGroups(groups=groups, total=total, reasons=reasons)


def valid_reason(reason: object) -> bool:
    """Whether a typed reason could name a group at all (text a reason column can hold)."""
    return isinstance(reason, str) and 0 < len(reason) <= REASON_MAX_LENGTH and "\x00" not in reason


def reason_check(job_id: int, reason: object) -> str:
    """`reason` when some failed or skipped item of the job has it; UnknownReason (naming the closest of the
    job's largest groups) otherwise, for any text, without a query that text could break."""
    if valid_reason(reason) and _of_reason(job_id, reason).exists():
        return reason
    known = [g.reason for g in job_failure_groups(job_id).groups]
    raise UnknownReason(job_id, str(reason) if isinstance(reason, str) else repr(reason), known)


def reason_counts(job_id: int, reason: str) -> tuple[int, int]:
    """(items, of which failed) of the job's failed and skipped items with a checked `reason`, whatever its
    group's rank (the page's groups are only the largest)."""
    counts = _of_reason(job_id, reason).aggregate(items=Count("id"),
                                                  failed=Count("id", filter=Q(status=SubJobStatus.FAILED)))
    return counts["items"], counts["failed"]


def _of_reason(job_id: int, reason: str):
    return SubJob.objects.filter(job_id=job_id, status__in=sorted(SUBJOB_LEDGER), reason=reason)


def job_failed_items(job_id: int, *, reason: str | None = None, status: str | None = None,
                     after_id: int | None = None, limit: int = ITEMS_PER_PAGE) -> list[FailedItem]:
    """One keyset page of the ledger after the item `after_id`: of one reason in id order, or of every reason
    in (reason, id) order; `status` narrows to failed or skipped."""
    return _page(job_id, reason=reason, status=status, after_id=after_id, after_reason=None, limit=limit)


def _page(job_id: int, *, reason: str | None, status: str | None, after_id: int | None, after_reason: str | None,
          limit: int) -> list[FailedItem]:
    name = "job_failure_reason_items_after" if reason is not None else "job_failure_items_after"
    with connection.cursor() as cursor:
        cursor.execute(queries[name], {"job_id": job_id, "reason": reason, "status": status, "after_id": after_id,
                                       "after_reason": after_reason, "limit": limit})
        return [FailedItem(*row) for row in cursor.fetchall()]


def job_failed_items_all(job_id: int, *, reason: str | None = None, status: str | None = None,
                         page: int = EXPORT_PAGE) -> Iterator[FailedItem]:
    """Every item of the ledger (or of one reason), page by page in the list's order: a generator that holds
    one page at a time."""
    after_id, after_reason = None, None
    while rows := _page(job_id, reason=reason, status=status, after_id=after_id, after_reason=after_reason,
                        limit=page):
        yield from rows
        after_id, after_reason = rows[-1].id, rows[-1].reason
        if len(rows) < page:
            return


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_lines(job_id: int, items: Iterator[FailedItem]) -> Iterator[str]:
    """The export as CSV text, line by line (a header, then one row per item), for a streaming response or
    stdout. Times are ISO 8601 in UTC; a cell a spreadsheet would run as a formula is quoted with "'"."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(row) -> str:
        writer.writerow(row)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(CSV_COLUMNS)
    for item in items:
        yield line([_cell(value) for value in (
            job_id, item.key, item.status, item.reason, item.error_class, item.error, item.attempts,
            item.first_seen.isoformat() if item.first_seen else "",
            item.last_seen.isoformat() if item.last_seen else "", item.partition_id, item.note)])
