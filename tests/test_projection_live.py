"""The projection under a real qcluster: a job throttled mid-run shows a rate at the limit, an ETA that needs
its remaining items over the limit, "late", `limited_by: rate_limit` and no workers-needed, on every surface;
cancelled, its verdict is "not met"."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import connection

from partitions.models import Job, JobEvent, JobSample
from partitions.operations import knob, services
from partitions.reads.statistics import job_stats
from tests.support import cli, seed, started_job, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST, SLOW = 400.0, 20.0


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def test_a_job_throttled_mid_run_projects_at_the_limit_late_and_limited_by_it(clusters):
    seed(6000)
    fleet = clusters(1)
    job = started_job("tests.bump_range", {"partitions": 8}, rate_limit=FAST)
    wait_for(lambda: job_stats(Job.objects.get(pk=job.pk)).handled > 400, timeout=60, what="a fast start",
             clusters=fleet)

    services.job_throttle(job.pk, actor="test", rate_limit=SLOW)
    changed_at = JobEvent.objects.filter(job=job, type="job_throttle_changed").latest("id").created_at
    # Let a sample follow the change (workers take one every 2 s), then a few seconds at the new limit.
    wait_for(lambda: JobSample.objects.filter(job=job, taken_at__gt=changed_at).exists(), timeout=30,
             what="a sample after the throttle", clusters=fleet)
    time.sleep(5)
    knob.job_set(job.pk, actor="test", deadline=db_now() + timedelta(seconds=60))

    stats = job_stats(Job.objects.get(pk=job.pk))
    figures = stats.figures()
    assert 0.5 * SLOW <= figures["items_per_second"] <= 1.25 * SLOW, figures
    assert figures["effective_items_per_second"] <= SLOW
    assert figures["limited_by"] == "rate_limit"
    # The ETA is remaining / the effective rate, which the limit bounds: so it needs at least remaining / limit.
    assert figures["eta_seconds"] == pytest.approx(
        stats.remaining_items / figures["effective_items_per_second"], rel=0.02), "the ETA needs remaining / limit"
    assert figures["meets_deadline"] is False and figures["verdict"] == "late"
    assert figures["workers_needed"] is None, "no number of workers helps under a rate limit"
    assert figures["rate_needed"] > SLOW

    code, out, err = cli("status", str(job.pk), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["limited_by"], summary["verdict"], summary["workers_needed"]) == ("rate_limit", "late", None)
    assert summary["items_per_second"] <= 1.25 * SLOW
    code, out, _ = cli("status", str(job.pk))
    assert "late; limited by the rate limit of" in out and "; a rate limit of" in out

    services.job_cancel(job.pk, actor="test", reason="seen enough")
    cancelled = job_stats(Job.objects.get(pk=job.pk)).figures()
    assert (cancelled["meets_deadline"], cancelled["verdict"], cancelled["eta_seconds"]) == (False, "not met", None)
    assert cancelled["limited_by"] is None and cancelled["live_leases"] == 0
