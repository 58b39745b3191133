"""How a job's end reads on its page, in its controls and in its statistics: a failed job leads with what failed
and offers a retry; a retry is an attempt of its own and the time the job sat failed is not work; a cancelled
job reads who cancelled it and why, never "met", and keeps no running-job controls."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from partitions.admin import display
from partitions.admin.actions import job_controls
from partitions.models import Job, JobEvent
from partitions.operations import services
from partitions.reads.statistics import job_run_statistics, job_stats
from tests.factories import make_job, make_partition
from tests.support import planned_job, run_to_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("admin_env")]

RUNNING_JOB_CONTROLS = {"pause", "resume", "cancel", "throttle", "knob"}


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def failed_job() -> Job:
    """30 items, every third failing on its first attempt: the job ends failed with 10 failed sub-jobs."""
    job = run_to_end(planned_job("tests.items_serial", {"count": 30, "chunk_size": 10, "fail_every": 3},
                                 deadline=db_now() + timedelta(hours=1)))
    assert job.status == "failed"
    return job


def test_a_failed_job_leads_with_what_failed_shows_it_red_and_offers_only_the_retry_that_applies(
        no_dispatcher, operator):
    stats = job_stats(failed_job())
    fields = display.live_fields(stats)
    assert fields["outcome"] == "Failed: 10 items failed"
    assert display.bar_widths(stats) == {"done": pytest.approx(66.67), "failed": pytest.approx(33.33),
                                         "skipped": 0.0}
    assert fields["items"] == "30 / 30 items \u00b7 10 failed"
    assert fields["projection"].endswith("not met: failed at 100.0%"), "failed work never met a deadline"
    assert stats.figures()["meets_deadline"] is False
    controls = set(job_controls(operator, stats))
    assert "retry_subjobs" in controls and "retry_failed" not in controls, "no failed partition to retry"
    assert not controls & RUNNING_JOB_CONTROLS


def test_a_retry_is_its_own_attempt_and_the_time_the_job_sat_failed_is_not_work(no_dispatcher, operator):
    job = failed_job()
    time.sleep(1.0)  # the job sits failed
    assert services.subjobs_retry(job.pk, None, actor=operator) == 10
    during = job_stats(Job.objects.get(pk=job.pk))
    assert during.job.status == "running" and during.retried
    assert display.live_fields(during)["summary_title"] == "Summary of the previous attempt"
    assert "retry_subjobs" not in job_controls(operator, during), "nothing failed any more"

    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == "succeeded"
    stats = job_stats(job)
    run = job_run_statistics(job, stats=stats)
    first, retry = run["attempts"]
    assert (first["attempt"], first["outcome"], retry["attempt"], retry["outcome"]) == (
        "run 1", "failed", "retry 1", "succeeded")
    assert (first["items_handled"], retry["items_handled"]) == (30, 10)
    assert retry["steps_seconds"]["prepare"] is None
    # Against the recorded events: finalize is each attempt's finalize step, Duration leaves out the time
    # between the failure and the reopening.
    at = {kind: [e for t, e in JobEvent.objects.filter(job=job).order_by("id").values_list("type", "created_at")
                 if t == kind] for kind in ("finalizing_started", "job_failed", "job_reopened", "job_succeeded")}
    finalizing = ((at["job_failed"][0] - at["finalizing_started"][0])
                  + (at["job_succeeded"][0] - at["finalizing_started"][1])).total_seconds()
    assert run["steps_seconds"]["finalize"] == pytest.approx(finalizing, abs=0.002)
    sat_failed = (at["job_reopened"][0] - at["job_failed"][0]).total_seconds()
    wall = (job.finished_at - job.started_at).total_seconds()
    # The job's stamps and the events' are taken by different statements (ms apart, tens of ms on a loaded
    # machine); counting the second the job sat failed would be 1 s off, far outside this slack.
    assert stats.elapsed_seconds == pytest.approx(wall - sat_failed, abs=0.25)
    # The page's average and Statistics' overall rate are one figure.
    assert run["items_per_second"] == pytest.approx(stats.figures()["items_per_second"], abs=0.01)
    assert display.live_fields(stats)["summary_title"] == "Summary"


def test_a_cancelled_job_reads_who_and_why_never_met_and_releases_its_leases(no_dispatcher, operator):
    now = db_now()
    job = make_job(status="running", started_at=now - timedelta(minutes=5), planned_at=now - timedelta(minutes=5),
                   deadline=now + timedelta(hours=1))
    make_partition(job, seq=0, status="succeeded", estimated_items=62, done_items=62)
    make_partition(job, seq=1, status="running", estimated_items=938, lease_owner="host-a:1:abc")
    services.job_cancel(job.pk, actor=operator, reason="wrong period")
    stats = job_stats(Job.objects.get(pk=job.pk))
    fields = display.live_fields(stats)
    assert fields["outcome"] == "Cancelled by operator: wrong period"
    assert fields["error"] == "", "a cancel reason is not an error"
    assert fields["projection"].endswith(": not met: cancelled at 6.2%")
    assert stats.figures()["meets_deadline"] is False and stats.figures()["live_leases"] == 0
    assert "1 being released" in fields["partitions"] and "running" not in fields["partitions"]
    assert set(job_controls(operator, stats)) == {"rerun"}

    html = Client()
    html.force_login(operator)
    page = html.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert "Cancelled by operator: wrong period" in page
    live = html.get(reverse("admin:partitions_job_live", args=[job.pk])).json()["job"]
    assert live["controls"] == ["rerun"] and live["figures"]["verdict"] == "not met"


def test_the_default_cancel_reason_is_not_repeated(no_dispatcher, operator):
    job = make_job(status="running")
    services.job_cancel(job.pk, actor=operator, reason="cancelled by operator")
    assert display.live_fields(job_stats(Job.objects.get(pk=job.pk)))["outcome"] == "Cancelled by operator"
