"""The job page's partition grid: one cell per partition, or per bucket of consecutive partitions beyond MAX_CELLS.

The rule, for every cell (one partition is a bucket of one):
- a bucket is `bucket_size(total)` consecutive partitions in seq order (the last one may be shorter), so a job
  never draws more than MAX_CELLS cells;
- its colour is the most urgent status any of its partitions has, in URGENCY order: failed, then running, then
  pending, then cancelled; succeeded only when every one did;
- its shade is its partitions' mean progress: a finished partition counts 1, an unfinished one
  handled / estimated items (capped at 1, 0 when nothing is estimated);
- its tooltip (worded by grid.js on hover from the cell's `data-t`) gives the seq span, the count per status, the
  progress, the outer bounds (first lower, last upper), the highest attempt, one running worker and the splits.

The database folds partitions into cells (statement `job_partition_grid_cells`, one pass, ≤ MAX_CELLS rows);
everything else here is pure.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from django.db import connection
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from partitions.core.states import PARTITION_TERMINAL, PartitionStatus
from partitions.engine.sql import queries
from partitions.models import Partition, bounds_text

#: At most this many cells; beyond it each cell is a bucket of consecutive partitions.
MAX_CELLS = 1_000
#: A bucket shows the first of these that any of its partitions has.
URGENCY = (PartitionStatus.FAILED, PartitionStatus.RUNNING, PartitionStatus.PENDING, PartitionStatus.CANCELLED,
           PartitionStatus.SUCCEEDED)
#: The statement's per-status columns, in its order.
COUNT_COLUMNS = (PartitionStatus.PENDING, PartitionStatus.RUNNING, PartitionStatus.SUCCEEDED,
                 PartitionStatus.FAILED, PartitionStatus.CANCELLED)
_SEQ_RANGE = re.compile(r"(0|[1-9][0-9]{0,9})(?:-(0|[1-9][0-9]{0,9}))?")


def bucket_size(total: int, max_cells: int = MAX_CELLS) -> int:
    """Partitions per cell: 1 up to `max_cells` partitions, then the fewest that keep the cells ≤ `max_cells`."""
    return max(1, math.ceil(total / max_cells))


def cell_status(counts: dict[str, int]) -> str:
    """The most urgent status present (URGENCY order); pending for an empty bucket."""
    return next((status for status in URGENCY if counts.get(status)), PartitionStatus.PENDING)


def cell_progress(counts: dict[str, int], unfinished_progress: float) -> float:
    """Mean progress of a bucket's partitions: finished ones count 1, unfinished ones their summed fraction."""
    size = sum(counts.values())
    finished = sum(n for status, n in counts.items() if status in PARTITION_TERMINAL)
    return 0.0 if not size else min(1.0, (finished + unfinished_progress) / size)


def span_text(first: list, last: list, *, size: int, sub_jobs: int) -> str:
    """Outer bounds of a run of partitions, from the first's and the last's (kind, lower, upper, modulus,
    remainder, estimated) columns: a key range from the first lower to the last upper, the sub-jobs of a run of
    item chunks, or the two ends."""
    (kind, lower, upper, modulus, remainder, _), last_kind = first, last[0]
    if size == 1 or kind == last_kind != Partition.Kind.MODULO:
        upper = upper if size == 1 else last[2]
        return bounds_text(kind, lower=lower, upper=upper, modulus=modulus, remainder=remainder, sub_jobs=sub_jobs)
    ends = [bounds_text(k, lower=lo, upper=up, modulus=m, remainder=r, sub_jobs=e)
            for k, lo, up, m, r, e in (first, last)]
    return f"{ends[0]} … {ends[1]}"


@dataclass(frozen=True)
class Cell:
    first_seq: int
    last_seq: int
    counts: dict[str, int]
    progress: float
    attempts: int
    max_attempts: int
    worker: str
    bounds: str
    splits: int = 0

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    @property
    def status(self) -> str:
        return cell_status(self.counts)

    @property
    def seqs(self) -> str:
        """The cell's filter value for the partition table (`?pseq=`)."""
        return str(self.first_seq) if self.first_seq == self.last_seq else f"{self.first_seq}-{self.last_seq}"

    @property
    def facts(self) -> str:
        """What its tooltip says, compactly, for grid.js to word on hover (a worded title on every cell would triple
        the grid's bytes): "<counts in URGENCY order>|<percent>|<highest attempt>/<max>|<splits>|<worker>|<bounds>"
        (the bounds last: they are the only field that may hold a "|")."""
        counts = " ".join(str(self.counts.get(status, 0)) for status in URGENCY)
        return (f"{counts}|{_floor(self.progress, 100)}|{self.attempts}/{self.max_attempts}|{self.splits}|"
                f"{self.worker}|{self.bounds}")


def _floor(fraction: float, scale: int) -> int:
    """Rounded down, so an unfinished cell never reads 100% (the epsilon keeps 0.7 * 10 from landing on 6)."""
    return math.floor(fraction * scale + 1e-9)


def cell_from_row(row: tuple) -> Cell:
    """One row of `job_partition_grid_cells` as a Cell (its bounds come as jsonb text: Django loads no jsonb)."""
    first_seq, last_seq, *counted = row[:2 + len(COUNT_COLUMNS)]
    unfinished, attempts, max_attempts, worker, estimated, first, last, splits = row[2 + len(COUNT_COLUMNS):]
    counts = dict(zip(COUNT_COLUMNS, counted, strict=True))
    bounds = span_text(json.loads(first), json.loads(last), size=sum(counted), sub_jobs=estimated)
    return Cell(first_seq=first_seq, last_seq=last_seq, counts=counts,
                progress=cell_progress(counts, unfinished or 0.0), attempts=attempts, max_attempts=max_attempts,
                worker=worker, bounds=bounds, splits=splits)


def parse_seq_range(text: str | None) -> tuple[int, int] | None:
    """`?pseq=` as (first, last) seq (seqs count from 0): "12" or "12-40"; anything else, or a reversed span, is no
    filter (as a bad `?pstatus=` is)."""
    match = _SEQ_RANGE.fullmatch(text or "")
    if not match:
        return None
    first, last = int(match[1]), int(match[2] or match[1])
    return (first, last) if first <= last else None


def render_cells(cells: list[Cell], selected: tuple[int, int] | None = None) -> SafeString:
    """The cells as tiny `<i>` elements (class = status and progress decile; the CSS colours them): thousands of
    cells would cost a template loop tens of milliseconds, this costs a join."""
    def one(cell: Cell) -> str:
        chosen = " sel" if selected and selected[0] <= cell.first_seq and cell.last_seq <= selected[1] else ""
        return (f'<i class="{cell.status} p{_floor(cell.progress, 10)}{chosen}" data-seq="{cell.seqs}" '
                f'data-t="{escape(cell.facts)}"></i>')
    return mark_safe("".join(map(one, cells)))  # every value is a number, a status or escaped


@dataclass(frozen=True)
class PartitionGrid:
    cells: list[Cell]
    size: int
    html: SafeString

    @property
    def splits(self) -> int:
        return sum(cell.splits for cell in self.cells)


def job_partition_grid(job_id: int, *, total: int, selected: tuple[int, int] | None = None) -> PartitionGrid:
    """A job's grid in one query; `total` (its partition count, from the progress aggregate) sets the bucket."""
    size = bucket_size(total)
    with connection.cursor() as cursor:
        cursor.execute(queries["job_partition_grid_cells"], {"job_id": job_id, "size": size})
        cells = [cell_from_row(row) for row in cursor.fetchall()]
    return PartitionGrid(cells=cells, size=size, html=render_cells(cells, selected))
