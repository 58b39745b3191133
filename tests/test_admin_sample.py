"""The start preview's "Try on a sample" (partitions/admin/sample.py): the sample dry-run from the admin, on the
test client. It shows the report, writes nothing (checksums and engine counts), needs the start right, POST +
CSRF, and bad sizes or refused types get one clear error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsapp.billing.models import Subscription
from tests.conftest import VIEW_PERMS, make_staff
from tests.support import seed
from tests.test_sample_run import checksum, engine_counts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env", "no_dispatcher")]

START = "admin:partitions_job_start"


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def migrate_form(**extra: str) -> dict[str, str]:
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    return {"job_type": "billing.migrate_subscriptions", "params-since": since,
            "params-rows_per_partition": "100", "max_parallel": "2", "sample-partitions": "1",
            "sample-items": "10", **extra}


def test_the_preview_offers_the_sample_and_the_sample_shows_its_report_and_writes_nothing(operator):
    seed(subscriptions=300, products=2)
    before, counts = checksum(Subscription), engine_counts()
    client = client_for(operator)
    preview = client.post(reverse(START), {**migrate_form(), "_preview": "Preview plan"}).content.decode()
    assert 'id="pj-sample"' in preview and 'name="sample-items"' in preview
    response = client.post(reverse(START), {**migrate_form(), "_sample": "Try on a sample"})
    assert response.status_code == 200
    sample = response.context["sample"]
    assert checksum(Subscription) == before and engine_counts() == counts
    assert sample["items_done"] == 10 and sample["changes_total"] == 10
    assert sample["parallel"] == min(2, sample["planned_partitions"]), "max parallel 2, at most one a partition"
    assert sample["changes"][0]["text"] == "product_version 1 -> 2"
    html = response.content.decode()
    assert 'id="pj-sample-result"' in html and "everything was rolled back" in html
    assert f'data-projected-seconds="{sample["projected_seconds"]}"' in html
    assert "product_version 1 -&gt; 2" in html
    assert response.context["preview"]["partitions"] == sample["planned_partitions"], "shown with its plan"


def test_a_sample_of_a_type_that_has_not_declared_its_effects_is_refused_with_one_message(operator):
    before = engine_counts()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_concurrent", "params-count": "4", "params-chunk_size": "2",
        "sample-partitions": "1", "sample-items": "5", "_sample": "Try on a sample"})
    assert response.status_code == 200 and response.context.get("sample") is None
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["Cannot sample: cannot sample tests.items_concurrent: it has not declared its effects: set "
                     "dry_run_safe = True (database only) or False, or record external calls (records_effects)"]
    assert engine_counts() == before


def test_the_preview_of_a_refused_type_says_why_it_offers_no_sample(operator):
    html = client_for(operator).post(reverse(START), {
        "job_type": "tests.calls_out", "params-partitions": "1", "_preview": "Preview plan"}).content.decode()
    assert 'id="pj-sample"' not in html and 'id="pj-sample-options"' not in html
    assert ('No sample offered: it has effects outside the database (dry_run_safe = False) and does not record '
            'them (records_effects).') in html


@pytest.mark.parametrize(("field", "value"), [("partitions", "0"), ("partitions", "21"), ("items", "0"),
                                              ("items", "10001"), ("items", "x"), ("partitions", "")])
def test_bad_sample_sizes_show_their_error_and_run_nothing(operator, field, value):
    seed(subscriptions=50, products=2)
    before, counts = checksum(Subscription), engine_counts()
    response = client_for(operator).post(reverse(START), {**migrate_form(**{f"sample-{field}": value}),
                                                          "_sample": "Try on a sample"})
    assert response.status_code == 200 and response.context["sample"] is None
    assert set(response.context["sample_form"].errors) == {field}
    assert 'id="pj-sample-options"' in response.content.decode(), "the form shows its error"
    assert checksum(Subscription) == before and engine_counts() == counts


def test_a_viewer_cannot_sample_and_a_get_or_a_post_without_csrf_runs_nothing(operator):
    seed(subscriptions=50, products=2)
    before = checksum(Subscription)
    viewer = make_staff("viewer", *VIEW_PERMS)
    assert client_for(viewer).post(reverse(START), {**migrate_form(), "_sample": "1"}).status_code == 403
    strict = client_for(operator, enforce_csrf_checks=True)
    assert strict.post(reverse(START), {**migrate_form(), "_sample": "1"}).status_code == 403
    page = client_for(operator).get(reverse(START), {"type": "billing.migrate_subscriptions", "_sample": "1"})
    assert page.status_code == 200 and page.context.get("sample") is None
    assert checksum(Subscription) == before
