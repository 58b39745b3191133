"""`/metrics`: Prometheus text, guarded by a bearer token or a staff session."""

import pytest
from django.test import Client

from tests.support import make_job, make_partition

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


def test_metrics_count_jobs_partitions_items_and_leases(settings):
    settings.METRICS_TOKEN = "t"
    job = make_job(status="running")
    make_partition(job, seq=0, status="running", estimated_items=10, done_items=4)
    make_partition(job, seq=1, status="succeeded", estimated_items=10, done_items=9, failed_items=1)
    make_job(status="succeeded")
    body = Client().get("/metrics", secure=True, HTTP_AUTHORIZATION="Bearer t").content.decode()
    assert 'partitions_jobs{status="running"} 1' in body
    assert 'partitions_jobs{status="succeeded"} 1' in body
    assert 'partitions_active_partitions{status="running"} 1' in body
    assert 'partitions_active_items_done{type="tests.bump_range"} 13' in body
    assert 'partitions_active_items_failed{type="tests.bump_range"} 1' in body
    assert "partitions_live_leases 1" in body
    assert "django_q_queued_tasks 0" in body
