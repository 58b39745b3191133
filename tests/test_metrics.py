"""`/metrics`: Prometheus text from a collector that reads the tables, guarded by a bearer token or a staff
session; read back with prometheus_client's own parser."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from partitions.models import Partition
from tests.factories import make_job, make_partition

pytestmark = pytest.mark.django_db


def test_metrics_need_the_token_when_one_is_configured(settings):
    settings.METRICS_TOKEN = "s3cret"
    client = Client()
    assert client.get("/metrics", secure=True).status_code == 403
    assert client.get("/metrics", secure=True, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", secure=True, HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


@pytest.mark.parametrize("given", [
    "²é…",  # any str a test client or ASGI server may hand over
    "²é…".encode().decode("latin-1"),  # what a WSGI server makes of these UTF-8 bytes
    "\udcff",  # a lone surrogate (surrogateescape-decoded bytes)
], ids=["unicode", "wsgi-latin-1", "surrogate"])
def test_metrics_refuse_a_non_ascii_token_with_403(settings, given):
    settings.METRICS_TOKEN = "s3cret"
    client = Client()
    assert client.get("/metrics", secure=True, headers={"Authorization": f"Bearer {given}"}).status_code == 403
    assert client.get("/metrics", secure=True, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_metrics_without_a_token_are_for_staff_only(settings, django_user_model):
    settings.METRICS_TOKEN = ""
    client = Client()
    assert client.get("/metrics", secure=True).status_code == 403
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))
    assert client.get("/metrics", secure=True).status_code == 200


def db_now():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def scrape() -> dict[str, dict[tuple, float]]:
    """/metrics parsed by the library: {sample name: {sorted label items: value}}."""
    response = Client().get("/metrics", secure=True, HTTP_AUTHORIZATION="Bearer t")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = "t"


def test_metrics_count_jobs_partitions_items_and_leases(token):
    job = make_job(status="running")
    make_partition(job, seq=0, status="running", estimated_items=10, done_items=4)
    make_partition(job, seq=1, status="succeeded", estimated_items=10, done_items=9, failed_items=1)
    make_partition(job, seq=2, status="pending", estimated_items=10)
    make_job(status="succeeded")
    m = scrape()
    assert m["partitions_jobs"] == {(("status", "running"), ("type", "tests.bump_range")): 1,
                                    (("status", "succeeded"), ("type", "tests.bump_range")): 1}
    assert m["partitions_active_partitions"] == {(("status", "pending"),): 1, (("status", "running"),): 1,
                                                 (("status", "succeeded"),): 1}
    by_type = (("type", "tests.bump_range"),)
    assert m["partitions_active_items_estimated"] == {by_type: 30}
    assert m["partitions_active_items_done"] == {by_type: 13}
    assert m["partitions_active_items_failed"] == {by_type: 1}
    assert m["partitions_live_leases"] == {(): 1}
    assert m["partitions_expired_leases"] == {(): 0}
    assert m["partitions_claimable_partitions"] == {(): 1}
    assert m["django_q_queued_tasks"] == {(): 0}


def test_metrics_counters_sum_every_job_finished_or_not_with_total_names(token):
    running, done = make_job(status="running"), make_job(status="succeeded", type_name="tests.items")
    make_partition(running, seq=0, status="running", done_items=4, failed_items=2)
    make_partition(done, seq=0, status="succeeded", done_items=7, skipped_items=3)
    make_partition(done, seq=1, status="failed", done_items=1, failed_items=5)
    m = scrape()
    items = m["partitions_items_total"]
    assert items[(("outcome", "done"), ("type", "tests.bump_range"))] == 4
    assert items[(("outcome", "failed"), ("type", "tests.bump_range"))] == 2
    assert items[(("outcome", "done"), ("type", "tests.items"))] == 8
    assert items[(("outcome", "skipped"), ("type", "tests.items"))] == 3
    assert items[(("outcome", "failed"), ("type", "tests.items"))] == 5
    assert m["partitions_partitions_finished_total"] == {(("status", "failed"), ("type", "tests.items")): 1,
                                                         (("status", "succeeded"), ("type", "tests.items")): 1}


def test_metrics_report_expired_leases_and_the_oldest_running_partition_on_the_database_clock(token):
    job = make_job(status="running")
    now = db_now()
    make_partition(job, seq=0, status="running", started_at=now - timedelta(minutes=10))
    make_partition(job, seq=1, status="running", started_at=now - timedelta(minutes=1),
                   lease_expires_at=now - timedelta(seconds=5))
    m = scrape()
    assert m["partitions_live_leases"] == {(): 1}
    assert m["partitions_expired_leases"] == {(): 1}
    assert m["partitions_claimable_partitions"] == {(): 1}, "the expired lease can be taken over"
    # Measured on the database clock from a start 10 minutes before it: 600 s plus the scrape's own moment.
    assert m["partitions_oldest_running_partition_seconds"][()] == pytest.approx(600, abs=30)


def test_metrics_of_an_idle_database_are_zeros_not_gaps(token):
    m = scrape()
    for name in ["partitions_live_leases", "partitions_expired_leases", "partitions_claimable_partitions",
                 "partitions_oldest_running_partition_seconds", "django_q_queued_tasks"]:
        assert m[name] == {(): 0}, name


def test_metrics_label_values_are_escaped_by_the_library(token):
    odd = 'ops "nightly"\\run\nline2'
    make_job(status="failed", type_name=odd)
    m = scrape()
    assert m["partitions_jobs"] == {(("status", "failed"), ("type", odd)): 1}


def test_metrics_cost_a_fixed_number_of_queries_whatever_the_number_of_jobs(token):
    def queries_of_a_scrape() -> int:
        scrape()  # past this process's first-use caches (whatever the tests before this one left)
        with CaptureQueriesContext(connection) as queries:
            scrape()
        return len(queries)

    counts = []
    for n in range(5):
        job = make_job(status="running", type_name=f"tests.t{n}")
        make_partition(job, seq=0, status="running")
        Partition.objects.update(done_items=1)
        counts.append(queries_of_a_scrape())
    # One per family; for the running jobs' figures: the jobs, progress, course events, samples, and the fleet's
    # size (a cache read in a savepoint).
    assert len(set(counts)) == 1 and counts[0] <= 19, counts


def test_metrics_count_jobs_a_health_check_holds_by_type(token):
    held = make_job(status="running", type_name="tests.held", throttled_since=timezone.now(),
                    throttled_reason="a transaction has been open 400s > 300s")
    make_job(status="running", type_name="tests.free")
    make_job(status="succeeded", type_name="tests.held", throttled_since=held.throttled_since)
    assert scrape()["partitions_throttled_jobs"] == {(("type", "tests.held"),): 1}
