"""The partition grid on the job page, against the database: one aggregate query at 10k partitions inside the page's
query budget, cells and buckets as the rule says, the split count it carries, and a cell's `?pseq=` filter."""

from __future__ import annotations

import gzip
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from partitions.models import Partition
from partitions.reads.grid import MAX_CELLS, job_partition_grid
from partitions.reads.pages import job_splits
from tests.factories import make_job, make_partition
from tests.test_admin_pages import SQL_BIG_PARTITIONS, client_for, db_now, job_page

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]

#: The issue's budget for the job page and its live poll at 10k partitions (the grid included).
MAX_QUERIES = 20
#: A filtered partition table counts its rows: one COUNT over the (job, seq) index.
MAX_QUERIES_FILTERED = MAX_QUERIES + 1
#: Per cell at most: a tiny element, its classes, its seq span and its tooltip's facts (no per-cell layout markup);
#: this job's cells are the worst case, every one a mix of four statuses with a worker.
MAX_BYTES_PER_CELL = 120
CELL = re.compile(r'<i class="(\w+) p(\d+)( sel)?" data-seq="([\d-]+)" data-t="([^"]*)"></i>')


def big_job(n: int):
    """A job with `n` item partitions by seq % 10: 0-5 succeeded, 6 failed, 7 running on host-(seq % 7), 8-9 pending
    (tests.test_admin_pages.SQL_BIG_PARTITIONS)."""
    job = make_job(status="running", type_name="tests.items_serial", started_at=db_now() - timedelta(hours=1))
    with connection.cursor() as cursor:
        cursor.execute(SQL_BIG_PARTITIONS, {"job": job.pk, "n": n})
        cursor.execute("ANALYZE partitions_partition")
    return job


def cells_of(html: str) -> list[tuple]:
    grid = html[html.index("data-partition-grid"):]
    return CELL.findall(grid[:grid.index("</div>")])


def live_grid(client, job, **params) -> str:
    return client.get(reverse("admin:partitions_job_live", args=[job.pk]), params).json()["sections"]["grid"]


def test_the_grid_of_10k_partitions_is_1000_buckets_of_10_in_one_query_inside_the_page_budget(viewer):
    job = big_job(10_000)
    client = client_for(viewer)
    client.get(job_page(job.pk))  # warm: session, permissions cache, template loading

    with CaptureQueriesContext(connection) as grid_queries:
        grid = job_partition_grid(job.pk, total=10_000)
    assert len(grid_queries) == 1 and grid.size == 10 and len(grid.cells) == MAX_CELLS
    grid_seconds = page_seconds = float("inf")
    for _ in range(3):  # best of three, the grid alone against the whole page, in the same run
        started = time.perf_counter()
        job_partition_grid(job.pk, total=10_000)
        grid_seconds = min(grid_seconds, time.perf_counter() - started)
        started = time.perf_counter()
        client.get(job_page(job.pk))
        page_seconds = min(page_seconds, time.perf_counter() - started)
    print(f"\ngrid of 10,000 partitions: {grid_seconds * 1000:.0f} ms (query + cells + markup), "
          f"{grid_seconds / page_seconds:.0%} of the job page's {page_seconds * 1000:.0f} ms")

    for label, params, budget in (("page", {}, MAX_QUERIES), ("a cell's partitions", {"pseq": "40-49"},
                                                               MAX_QUERIES_FILTERED)):
        with CaptureQueriesContext(connection) as page_queries:
            started = time.perf_counter()
            response = client.get(job_page(job.pk), params)
            elapsed = time.perf_counter() - started
        queries = len(page_queries)  # now: the next request clears the connection's query log
        assert response.status_code == 200 and queries <= budget, [q["sql"][:80] for q in page_queries]
        html = response.content.decode()
        cells = cells_of(html)
        grid_bytes = len(live_grid(client, job, **params).encode())
        print(f"\njob page ({label}) at 10,000 partitions: {queries} queries, {elapsed * 1000:.0f} ms, "
              f"{len(response.content):,} bytes ({len(gzip.compress(response.content)):,} gzipped), "
              f"grid {grid_bytes:,} bytes for {len(cells):,} cells")
        assert len(cells) == MAX_CELLS and grid_bytes < MAX_BYTES_PER_CELL * MAX_CELLS

    # Every bucket is seqs 10i..10i+9: one failed, one running, two pending, six succeeded; 7 of 10 finished.
    for i, (status, decile, selected, seqs, facts) in enumerate(cells):
        assert (status, decile, seqs) == ("failed", "7", f"{10 * i}-{10 * i + 9}")
        assert facts == f"1 1 2 0 6|70|1/5|0|host-{(10 * i + 7) % 7}:1:abc|100 sub-jobs"
        assert bool(selected) == (i == 4)

    with CaptureQueriesContext(connection) as live_queries:
        live = client.get(reverse("admin:partitions_job_live", args=[job.pk]))
    assert live.status_code == 200 and len(live_queries) <= MAX_QUERIES
    print(f"live poll at 10,000 partitions: {len(live_queries)} queries, {len(live.content):,} bytes")


def test_a_cells_filter_lists_exactly_its_partitions_and_keeps_the_status_filter(viewer):
    job = big_job(100)
    client = client_for(viewer)
    response = client.get(job_page(job.pk), {"pseq": "20-29"})
    rows = response.context["partition_rows"]
    assert [row["p"].seq for row in rows] == list(range(20, 30))
    assert response.context["partitions"].paginator.count == 10
    html = response.content.decode()
    assert 'id="pj-seq-filter"' in html and "#20\u201329 (grid)" in html
    assert [c[3] for c in cells_of(html) if c[2]] == [str(seq) for seq in range(20, 30)]  # one cell a partition

    pending = client.get(job_page(job.pk), {"pseq": "20-29", "pstatus": "pending"}).context["partition_rows"]
    assert [row["p"].seq for row in pending] == [28, 29]
    # The status links keep the cell, the clear link drops it.
    assert 'href="?pseq=20-29&amp;pstatus=failed"' in html and 'href="?" aria-label="show every partition"' in html

    # The live poll renders the same filtered table (progress.js sends the page's query string).
    sections = client.get(reverse("admin:partitions_job_live", args=[job.pk]), {"pseq": "25"}).json()["sections"]
    assert re.findall(r'partition/\d+/change/">(\d+)<', sections["partitions"]) == ["25"]
    assert sections["grid"].count(" sel") == 1 and '<i class="succeeded p10 sel" data-seq="25"' in sections["grid"]


@pytest.mark.parametrize("bad", ["", "x", "-1", "5-2", "1-2-3", "99999999999", "<b>", "1e3", "\u0661", "1 "])
def test_a_bad_seq_filter_is_no_filter(viewer, bad):
    job = big_job(60)
    response = client_for(viewer).get(job_page(job.pk), {"pseq": bad})
    assert response.status_code == 200 and response.context["seq_filter"] is None
    assert len(response.context["partition_rows"]) == 50 and 'id="pj-seq-filter"' not in response.content.decode()


def test_up_to_max_cells_each_partition_is_its_own_cell_and_2000_make_buckets_of_two(viewer):
    one = make_job(status="running")
    make_partition(one, seq=0, status="running", estimated_items=40, done_items=10, lease_owner="host-z:9:q",
                   lower=[1], upper=[50])
    [cell] = job_partition_grid(one.pk, total=1).cells
    assert (cell.status, cell.seqs, cell.progress) == ("running", "0", 0.25)
    assert cell.facts == "0 1 0 0 0|25|1/5|0|host-z:9:q|[(1), (50))"

    two_thousand = big_job(2_000)
    grid = job_partition_grid(two_thousand.pk, total=2_000)
    assert grid.size == 2 and len(grid.cells) == 1_000
    # seqs 0-1 succeeded; 6-7 failed + running; 8-9 pending.
    assert [(c.seqs, c.status, c.progress) for c in grid.cells[:5]] == [
        ("0-1", "succeeded", 1.0), ("2-3", "succeeded", 1.0), ("4-5", "succeeded", 1.0), ("6-7", "failed", 0.5),
        ("8-9", "pending", 0.0)]


def test_the_grid_spans_key_ranges_and_counts_the_splits_the_page_shows(viewer):
    job = make_job(status="running")
    parent = make_partition(job, seq=0, status="succeeded", lower=None, upper=[100], estimated_items=10)
    make_partition(job, seq=1, status="pending", lower=[100], upper=[200], estimated_items=10)
    make_partition(job, seq=2, status="running", lower=[200], upper=None, estimated_items=10, done_items=5,
                   split_from=parent)
    grid = job_partition_grid(job.pk, total=3)
    assert [c.bounds for c in grid.cells] == ["[(-inf), (100))", "[(100), (200))", "[(200), (+inf))"]
    assert grid.splits == job_splits(job.pk) == 1
    assert grid.cells[2].facts.split("|")[3] == "1"
    response = client_for(viewer).get(job_page(job.pk))
    assert response.context["splits"] == 1 and '<dd id="pj-splits">1</dd>' in response.content.decode()

    # Gaps in seq (a partition gone) never make more cells than partitions.
    Partition.objects.filter(job=job, seq=1).delete()
    assert [c.seqs for c in job_partition_grid(job.pk, total=2).cells] == ["0", "2"]


def test_a_job_without_partitions_has_an_empty_grid(viewer):
    job = make_job(status="pending")
    response = client_for(viewer).get(job_page(job.pk))
    assert response.status_code == 200 and cells_of(response.content.decode()) == []
    assert "One cell per partition" in response.content.decode()
