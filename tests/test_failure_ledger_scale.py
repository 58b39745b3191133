"""The failure ledger at 100,000 failed items: the job page, its live poll, the item list and the CSV's first page
cost a bounded number of queries, and the plans use the ledger's index (the groups index-only, the item pages
without a sort), so their cost does not grow with the page number."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.urls import reverse

from partitions.engine.sql import queries
from partitions.reads.ledger import EXPORT_PAGE
from tests.factories import make_job, make_partition
from tests.test_admin_pages import client_for

# Committed rows (transactional_db), so the fixture can VACUUM them as autovacuum would: a visibility map is what
# lets the planner read the groups from the index alone.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("admin_env")]

ITEMS = 100_000
#: Items of other jobs in the table, all succeeded (a table holds many jobs: the ledger's are a small share).
OTHER_ITEMS = 200_000
#: Six reasons of very different sizes, and one of a single item.
SQL_FAILED_ITEMS = """
    INSERT INTO partitions_subjob (job_id, partition_id, seq, key, payload, ordering_key, status, attempts, error,
        error_class, reason, first_seen_at, last_seen_at, created_at, finished_at)
    SELECT %(job)s, %(partition)s, g, 'item-' || g, '{}'::jsonb, '',
        CASE WHEN g %% 10 = 9 THEN 'skipped' ELSE 'failed' END, 1 + g %% 3,
        'E' || (g %% 6) || ': item ' || g || ' broke', 'E' || (g %% 6),
        CASE WHEN g = 0 THEN 'Lonely: once' ELSE 'E' || (g %% 6) || ': item <n> broke' END,
        now() - interval '1 hour', now(), now(), now()
    FROM generate_series(0, %(n)s - 1) g
"""


SQL_OTHER_ITEMS = """
    INSERT INTO partitions_subjob (job_id, partition_id, seq, key, payload, ordering_key, status, attempts, error,
        created_at, finished_at)
    SELECT %(job)s, %(partition)s, g, 'item-' || g, '{}'::jsonb, '', 'succeeded', 1, '', now(), now()
    FROM generate_series(0, %(n)s - 1) g
"""


@pytest.fixture
def big_job():
    other = make_job(status="succeeded", type_name="tests.items_serial")
    job = make_job(status="failed", type_name="tests.items_serial")
    partition = make_partition(job, kind="items", status="failed")
    with connection.cursor() as cursor:
        cursor.execute(SQL_OTHER_ITEMS, {"job": other.pk, "partition": make_partition(other, kind="items").pk,
                                         "n": OTHER_ITEMS})
        cursor.execute(SQL_FAILED_ITEMS, {"job": job.pk, "partition": partition.pk, "n": ITEMS})
        cursor.execute("VACUUM ANALYZE partitions_subjob")
    return job


def plan(name: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + queries[name], params)
        return json.dumps(cursor.fetchone()[0])


def test_with_100k_failed_items_groups_are_index_only_pages_use_the_index_and_every_read_is_bounded(
        big_job, operator, django_assert_max_num_queries):
    """One test over one 100k fixture (building it costs more than every check together)."""
    groups = plan("job_failure_groups", {"job_id": big_job.pk, "limit": 50})
    assert '"Index Only Scan"' in groups and "subjob_failure_reason_idx" in groups
    for name, params in (("job_failure_items_after", {"after_reason": "E3: item <n> broke", "after_id": 90_000}),
                         ("job_failure_reason_items_after", {"reason": "E3: item <n> broke", "after_id": 90_000})):
        page = plan(name, {"job_id": big_job.pk, "status": None, "limit": 50, "reason": None, "after_id": None,
                           "after_reason": None, **params})
        assert "subjob_failure_reason_idx" in page and '"Sort"' not in page, name

    client = client_for(operator)
    page_url = reverse("admin:partitions_job_change", args=[big_job.pk])
    client.get(page_url)  # warm: session, permissions, templates
    with django_assert_max_num_queries(22) as captured:
        started = time.perf_counter()
        response = client.get(page_url)
        elapsed = time.perf_counter() - started
    assert response.context["ledger"].total == ITEMS and response.context["ledger"].reasons == 7
    counts = {g.reason: g.count for g in response.context["ledger"].groups}
    assert counts["Lonely: once"] == 1 and sum(counts.values()) == ITEMS
    print(f"\njob page with {ITEMS:,} failed items: {len(captured)} queries, {elapsed * 1000:.0f} ms")
    with django_assert_max_num_queries(22):
        assert client.get(reverse("admin:partitions_job_live", args=[big_job.pk])).status_code == 200

    list_url = reverse("admin:partitions_job_failures", args=[big_job.pk])
    client.get(list_url)
    for params in ({}, {"after": 99_000}, {"reason": "E3: item <n> broke", "after": 90_003}, {"status": "skipped"}):
        with django_assert_max_num_queries(12) as captured:
            response = client.get(list_url, params)
        assert response.status_code == 200 and len(response.context["items"]) == 50, params
        print(f"item list {params}: {len(captured)} queries")
    with django_assert_max_num_queries(10) as captured:
        response = client.get(reverse("admin:partitions_job_failures_csv", args=[big_job.pk]))
        chunks = response.streaming_content
        first = [next(chunks) for _ in range(EXPORT_PAGE + 1)]  # the header and the first page's rows
    assert first[0].startswith(b"job,key,status,reason") and len(first) == EXPORT_PAGE + 1
    print(f"CSV first page: {len(captured)} queries")
    rows = sum(1 for _ in chunks) + len(first) - 1
    assert rows == ITEMS  # one row per failed or skipped item
