"""The partition grid's rule as pure functions, without the database: bucket sizes, a bucket's status, progress and
bounds, its tooltip's facts, the cells' markup and the `?pseq=` filter value."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partitions.core.states import PartitionStatus as S
from partitions.reads.grid import (
    COUNT_COLUMNS,
    MAX_CELLS,
    URGENCY,
    Cell,
    bucket_size,
    cell_from_row,
    cell_progress,
    cell_status,
    parse_seq_range,
    render_cells,
    span_text,
)

RANGE = ["range", [10], [20], None, None, 100]
ITEMS = ["items", None, None, None, None, 25]


def counts(**given_counts: int) -> dict[str, int]:
    return {status: given_counts.get(status, 0) for status in COUNT_COLUMNS}


def row(first_seq, last_seq, *, unfinished=0.0, attempts=1, max_attempts=5, worker="", estimated=100, first=RANGE,
        last=RANGE, splits=0, **status_counts) -> tuple:
    """A row as `job_partition_grid_cells` returns it (bounds as jsonb text)."""
    return (first_seq, last_seq, *(status_counts.get(s, 0) for s in COUNT_COLUMNS), unfinished, attempts,
            max_attempts, worker, estimated, json.dumps(first), json.dumps(last), splits)


@pytest.mark.parametrize(("partitions", "size", "cells"), [
    (0, 1, 0), (1, 1, 1), (999, 1, 999), (MAX_CELLS, 1, MAX_CELLS), (MAX_CELLS + 1, 2, 501),
    (2_000, 2, 1_000), (10_000, 10, 1_000), (10_001, 11, 910), (100_000, 100, 1_000),
])
def test_one_cell_per_partition_up_to_max_cells_then_buckets_of_consecutive_partitions(partitions, size, cells):
    assert bucket_size(partitions) == size
    assert math.ceil(partitions / size) == cells


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=5_000))
def test_the_cells_never_exceed_max_cells_and_a_smaller_bucket_would(partitions, max_cells):
    size = bucket_size(partitions, max_cells)
    assert math.ceil(partitions / size) <= max_cells
    assert size == 1 or math.ceil(partitions / (size - 1)) > max_cells


def test_a_bucket_shows_the_most_urgent_status_any_of_its_partitions_has():
    assert URGENCY == (S.FAILED, S.RUNNING, S.PENDING, S.CANCELLED, S.SUCCEEDED)
    assert set(URGENCY) == set(S.values) == set(COUNT_COLUMNS)
    assert cell_status(counts(succeeded=9, failed=1)) == S.FAILED
    assert cell_status(counts(succeeded=5, running=1, pending=4, failed=1)) == S.FAILED
    assert cell_status(counts(succeeded=5, running=1, pending=4)) == S.RUNNING
    assert cell_status(counts(succeeded=9, pending=1)) == S.PENDING
    assert cell_status(counts(succeeded=9, cancelled=1)) == S.CANCELLED
    assert cell_status(counts(succeeded=10)) == S.SUCCEEDED
    for status in COUNT_COLUMNS:  # one partition: its own status
        assert cell_status(counts(**{status: 1})) == status
    assert cell_status(counts()) == S.PENDING


def test_progress_is_the_mean_over_partitions_with_finished_ones_counting_whole():
    assert cell_progress(counts(succeeded=1), 0.0) == 1.0
    assert cell_progress(counts(failed=1), 0.0) == 1.0  # finished, not done: the colour says failed
    assert cell_progress(counts(pending=1), 0.0) == 0.0
    assert cell_progress(counts(running=1), 0.25) == 0.25
    assert cell_progress(counts(succeeded=2, running=1, pending=1), 0.5) == pytest.approx(2.5 / 4)
    assert cell_progress(counts(), 0.0) == 0.0
    assert cell_progress(counts(running=1), 1.5) == 1.0  # never more than whole


def test_bounds_of_a_bucket_run_from_its_first_partitions_lower_to_its_last_ones_upper():
    assert span_text(RANGE, RANGE, size=1, sub_jobs=100) == "[(10), (20))"
    assert span_text(["range", None, [5, 7], None, None, 3], ["range", [90, 1], None, None, None, 3], size=10,
                     sub_jobs=30) == "[(-inf), (+inf))"
    assert span_text(["range", ["2026-11-01"], ["2026-11-02"], None, None, 3],
                     ["range", ["2026-11-09"], ["2026-11-10"], None, None, 3], size=9, sub_jobs=9
                     ) == "[(2026-11-01), (2026-11-10))"
    assert span_text(ITEMS, ITEMS, size=4, sub_jobs=100) == "100 sub-jobs"
    assert span_text(ITEMS, ITEMS, size=1, sub_jobs=25) == "25 sub-jobs"
    modulo = ["modulo", None, None, 8, 0, 5], ["modulo", None, None, 8, 3, 5]
    assert span_text(*modulo, size=4, sub_jobs=20) == "id % 8 = 0 … id % 8 = 3"
    assert span_text(RANGE, ["retry", None, None, None, None, 2], size=2, sub_jobs=102) == "[(10), (20)) … 2 sub-jobs"


def test_a_single_partitions_facts_give_its_counts_progress_attempt_worker_and_bounds():
    cell = cell_from_row(row(7, 7, running=1, unfinished=0.42, attempts=2, max_attempts=5, worker="host-a:12:x"))
    assert (cell.status, cell.size, cell.seqs, cell.progress) == (S.RUNNING, 1, "7", 0.42)
    assert cell.facts == "0 1 0 0 0|42|2/5|0|host-a:12:x|[(10), (20))"


def test_an_unfinished_cell_never_reads_100_percent_and_a_finished_one_always_does():
    almost = cell_from_row(row(1, 1, running=1, unfinished=0.999))
    assert almost.facts.split("|")[1] == "99" and 'class="running p9"' in render_cells([almost])
    seventy = cell_from_row(row(0, 9, succeeded=6, failed=1, running=1, pending=2))
    assert seventy.facts.split("|")[1] == "70" and 'class="failed p7"' in render_cells([seventy])
    assert cell_from_row(row(0, 0, failed=1)).facts.startswith("1 0 0 0 0|100|")


def test_a_buckets_facts_count_each_status_in_urgency_order_and_give_the_highest_attempt():
    cell = cell_from_row(row(11, 20, succeeded=6, failed=1, running=2, pending=1, unfinished=0.5, attempts=3,
                             worker="host-b:1:y", first=["range", [100], [110], None, None, 10],
                             last=["range", [190], [200], None, None, 10], splits=1))
    assert (cell.status, cell.size, cell.seqs) == (S.FAILED, 10, "11-20")
    assert cell.progress == pytest.approx(0.75)
    assert cell.facts == "1 2 1 0 6|75|3/5|1|host-b:1:y|[(100), (200))"


def test_cells_render_as_tiny_elements_with_escaped_facts_and_the_selection_marked():
    hostile = ["range", ['"><script>x</script>'], ["&"], None, None, 1]
    cells = [cell_from_row(row(1, 2, succeeded=2, first=hostile, last=hostile)),
             cell_from_row(row(3, 4, running=1, pending=1, unfinished=0.96)),
             cell_from_row(row(5, 5, pending=1))]
    html = render_cells(cells, selected=(3, 4))
    assert html.count("<i ") == 3 and "<script>" not in html
    assert '<i class="succeeded p10" data-seq="1-2" data-t="0 0 0 0 2|100|1/5|0||[(&quot;&gt;&lt;script' in html
    assert '<i class="running p4 sel" data-seq="3-4" data-t="0 1 1 0 0|48|' in html  # (0 + 0.96) / 2
    assert '<i class="pending p0" data-seq="5" data-t="0 0 1 0 0|0|1/5|0||[(10), (20))"></i>' in html
    assert render_cells([]) == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("12", (12, 12)), ("12-40", (12, 40)), ("1-1", (1, 1)), ("40-12", None), ("0", (0, 0)), ("0-3", (0, 3)),
    ("00", None), ("01", None),
    ("", None), (None, None), ("-3", None), ("3-", None), ("1-2-3", None), (" 1", None), ("1 ", None),
    ("\u0661", None), ("12345678901", None), ("1e3", None), ("1,2", None),
])
def test_the_seq_filter_takes_one_seq_or_an_ordered_span_and_nothing_else(text, expected):
    assert parse_seq_range(text) == expected


@given(st.text(max_size=30))
def test_the_seq_filter_never_raises_and_returns_an_ordered_span(text):
    parsed = parse_seq_range(text)
    assert parsed is None or 0 <= parsed[0] <= parsed[1]


def test_a_cell_knows_its_size_from_its_counts():
    cell = Cell(first_seq=1, last_seq=3, counts=counts(pending=3), progress=0.0, attempts=0, max_attempts=5,
                worker="", bounds="3 sub-jobs")
    assert (cell.size, cell.status, cell.splits) == (3, S.PENDING, 0)
