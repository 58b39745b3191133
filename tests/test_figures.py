"""One computation of rate, ETA, workers needed and the deadline projection, shown alike everywhere; progress
that never passes 100%; throughput samples taken by the workers themselves."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from opsapp.billing.models import Event
from opsapp.billing.seeding import seed_demo
from partitions import worker
from partitions.admin import display
from partitions.models import Job, JobEvent, JobSample, Partition
from partitions.reads import sampling
from partitions.reads.statistics import job_stats
from partitions.worker import maintenance
from tests.factories import make_job, make_partition
from tests.support import cli, planned_job, run_to_end
from tests.test_deadline_alerts import seen_since

pytestmark = pytest.mark.usefixtures("admin_env")


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def job_at_known_progress() -> Job:
    """1,000 of 10,000 items handled, 600 of them in the last 60 s with 2 leases in flight on average, a deadline
    in 5 minutes, max parallel 2 (so it binds): 10 items/s, 5 per worker, 15 min to go, 6 workers needed, 10 min
    late."""
    now = db_now()
    job = make_job(status="running", started_at=now - timedelta(minutes=10), planned_at=now - timedelta(minutes=10),
                   deadline=now + timedelta(seconds=300), max_parallel=2)
    make_partition(job, seq=0, status="succeeded", estimated_items=2500, done_items=900)
    make_partition(job, seq=1, status="running", estimated_items=2500, done_items=80, skipped_items=20,
                   lease_owner="host-a:12:abc")
    make_partition(job, seq=2, status="pending", estimated_items=5000)
    JobSample.objects.create(job=job, taken_at=now - timedelta(seconds=60), done_items=380, failed_items=0,
                             skipped_items=20, live_leases=2)
    return job


@pytest.mark.django_db
def test_page_list_progress_json_cli_metrics_and_deadline_warning_agree_on_every_figure(viewer, settings):
    job = job_at_known_progress()
    figures = job_stats(job).figures()
    assert figures["items_per_second"] == pytest.approx(10.0, rel=0.01)
    assert figures["per_worker_rate"] == pytest.approx(5.0, rel=0.01)
    assert figures["eta_seconds"] == pytest.approx(900.0, rel=0.01)
    assert (figures["workers_needed"], figures["meets_deadline"], figures["live_leases"]) == (6, False, 1)
    fields = display.live_fields(job_stats(job))
    client = client_for(viewer)

    page = client.get(reverse("admin:partitions_job_change", args=[job.pk]))
    assert page.context["fields"] == fields
    html = page.content.decode()
    for name in ("rate", "eta", "projection", "workers_needed"):
        assert fields[name] in html, name
    assert "needs 6 parallel workers" in fields["workers_needed"] and "10m 00s late" in fields["projection"]

    listing = client.get(reverse("admin:partitions_job_changelist")).content.decode()
    assert fields["rate"] in listing and fields["eta"] in listing

    polled = client.get(reverse("admin:partitions_job_progress"), {"ids": job.pk}).json()["jobs"][str(job.pk)]
    assert {k: polled["fields"][k] for k in fields} == fields
    live = client.get(reverse("admin:partitions_job_live", args=[job.pk])).json()
    assert {k: live["job"]["fields"][k] for k in fields} == fields

    code, out, _ = cli("status", str(job.pk), "--json")
    summary = json.loads(out)
    assert code == 0
    for name in ("items_per_second", "per_worker_rate", "eta_seconds"):
        assert summary[name] == pytest.approx(figures[name], rel=0.01), name
    assert (summary["workers_needed"], summary["meets_deadline"]) == (6, False)

    from tests.test_metrics import scrape

    settings.METRICS_TOKEN = "t"
    metrics = scrape()
    series = (("job", str(job.pk)), ("type", job.type_name))
    assert metrics["partitions_job_items_per_second"][series] == pytest.approx(figures["items_per_second"])
    assert metrics["partitions_job_eta_seconds"][series] == pytest.approx(figures["eta_seconds"], rel=0.01)
    assert metrics["partitions_job_workers_needed"][series] == 6

    maintenance.alert_deadlines()  # the first look at the late job starts its grace
    seen_since(job, 61)
    assert maintenance.alert_deadlines() == {"deadline_at_risk": 1, "deadline_recovered": 0}
    warning = JobEvent.objects.get(job=job, type="deadline_at_risk").data
    assert warning["workers_needed"] == 6 and warning["items_remaining"] == 9000
    assert warning["items_per_second"] == pytest.approx(figures["items_per_second"], rel=0.01)
    # The alert speaks the job page's words: its projection, what limits the job and the advice.
    assert (warning["projection"], warning["advice"]) == (fields["projection"], fields["workers_needed"])


@pytest.mark.django_db
def test_a_partition_that_handled_more_than_its_estimate_never_takes_progress_past_100_percent():
    job = make_job(status="running")
    make_partition(job, seq=0, status="succeeded", estimated_items=1000, done_items=2000)
    make_partition(job, seq=1, status="pending", estimated_items=1000)
    progress = job_stats(job).progress
    assert (progress.items_total, progress.items_done) == (3000, 2000)
    assert progress.percent == pytest.approx(200 / 3)
    assert display.live_fields(job_stats(job))["items"] == "2,000 / 3,000 items"


DEMO_RUNS = [
    ("billing.migrate_subscriptions", {"since": "2000-01-01T00:00:00Z", "rows_per_partition": 100}),
    ("billing.dispatch_events", {"buckets": 3, "confirm_ms": 0, "concurrency": 4}),
    ("billing.send_invoices", {"period": "2026-11", "work_ms": 0}),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("type_name", "params"), DEMO_RUNS, ids=[name for name, _ in DEMO_RUNS])
def test_every_demo_job_type_ends_at_exactly_100_percent_of_its_own_work(no_dispatcher, type_name, params):
    seed_demo(products=2, subscriptions=400, customers=7, events=300)
    job = run_to_end(planned_job(type_name, params))
    progress = job_stats(job).progress
    assert job.status == "succeeded", job.error
    assert progress.percent == 100.0 and progress.items_done == progress.items_total > 0


@pytest.mark.django_db(transaction=True)
def test_a_second_dispatch_run_counts_only_the_events_it_sent(no_dispatcher):
    seed_demo(products=1, subscriptions=0, customers=1, events=500)
    params = {"buckets": 4, "confirm_ms": 0, "concurrency": 4}
    first = run_to_end(planned_job("billing.dispatch_events", params))
    assert job_stats(first).progress.items_done == 500
    newest = Event.objects.order_by("-id").first()
    Event.objects.bulk_create([Event(kind=newest.kind, payload={"n": i}) for i in range(40)])

    second = run_to_end(planned_job("billing.dispatch_events", params))
    progress = job_stats(second).progress
    assert (progress.items_total, progress.items_done, progress.percent) == (40, 40, 100.0)
    assert Event.objects.filter(status="sent", send_count=1).count() == 540
    assert display.live_fields(job_stats(second))["items"] == "40 / 40 items"


@pytest.mark.django_db(transaction=True)
def test_workers_sample_the_throughput_of_the_job_they_run_every_few_seconds(no_dispatcher, settings):
    settings.PARTITIONS_SAMPLE_SECONDS = 0.1
    job = planned_job("tests.items_serial", {"count": 40, "chunk_size": 5, "sleep_ms": 30})
    worker.drain(budget_seconds=30, job_id=job.pk, worker="sampler")
    samples = list(JobSample.objects.filter(job=job).order_by("taken_at"))
    assert len(samples) >= 3, "a job of ~1 s gets several samples from its own worker, without tick"
    handled = [s.done_items + s.failed_items + s.skipped_items for s in samples]
    assert handled == sorted(handled) and handled[-1] > handled[0]
    assert all(s.live_leases <= 1 for s in samples)


@pytest.mark.django_db
def test_a_sample_is_not_taken_twice_within_the_interval(settings):
    job = make_job(status="running")
    make_partition(job, done_items=5)
    assert sampling.job_sample_take(job.pk, min_interval=60) is True
    assert sampling.job_sample_take(job.pk, min_interval=60) is False
    assert sampling.job_sample_take(job.pk, min_interval=0) is True
    assert JobSample.objects.filter(job=job).count() == 2
    assert Partition.objects.get(job=job).done_items == 5
