"""The estimated duration and deadline check of a planned job, from its type's past runs: the rule
(`partitions.reads.estimates`), the start page's preview and what it says without past runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from partitions.reads.estimates import PAST_RUNS, past_pace, plan_estimate
from partitions.reads.statistics import job_stats
from tests.factories import make_job
from tests.support import planned_job, run_to_end, seed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def succeeded_run(partitions: int = 2):
    job = run_to_end(planned_job("tests.bump_range", {"partitions": partitions}))
    assert job.status == "succeeded", job.error
    return job


def test_without_past_runs_there_is_no_estimate_and_runs_that_did_not_succeed_do_not_count():
    make_job(type_name="tests.bump_range", status="failed")
    make_job(type_name="tests.bump_range", status="running")
    assert past_pace("tests.bump_range") == (0, None)
    assert plan_estimate("tests.bump_range", 100, deadline=NOW).runs == 0


def test_the_pace_is_the_past_runs_own_average_rate_and_the_rate_limit_bounds_it():
    seed(subscriptions=40)
    job = succeeded_run()
    shown = job_stats(job).projection.items_per_second  # what the run's own page showed
    runs, pace = past_pace("tests.bump_range")
    assert runs == 1 and pace == pytest.approx(shown)
    free = plan_estimate("tests.bump_range", 400, now=NOW)
    assert free.items_per_second == pytest.approx(shown) and free.seconds == pytest.approx(400 / shown)
    assert free.meets_deadline is None
    bound = plan_estimate("tests.bump_range", 400, rate_limit=0.5, deadline=NOW + timedelta(minutes=10), now=NOW)
    assert (bound.items_per_second, bound.seconds, bound.finish) == (0.5, 800, NOW + timedelta(seconds=800))
    assert (bound.meets_deadline, bound.late_seconds) == (False, 200)
    on_time = plan_estimate("tests.bump_range", 400, rate_limit=0.5, deadline=NOW + timedelta(hours=1), now=NOW)
    assert (on_time.meets_deadline, on_time.late_seconds) == (True, 0)


def test_only_the_last_runs_count():
    seed(subscriptions=20)
    for _ in range(PAST_RUNS + 1):
        succeeded_run()
    assert past_pace("tests.bump_range")[0] == PAST_RUNS


def test_the_start_page_preview_shows_the_estimate_and_the_deadline_check(operator):
    seed(subscriptions=60)
    client = Client()
    client.force_login(operator)
    data = {"job_type": "tests.bump_range", "_preview": "Preview plan", "params-partitions": "3"}
    first = client.post(reverse("admin:partitions_job_start"), data).content.decode()
    assert "Estimated duration: no past runs of this job type yet: no estimated duration." in first
    succeeded_run()
    html = client.post(reverse("admin:partitions_job_start"),
                       {**data, "rate_limit": "0.01", "deadline": "+1h"}).content.decode()
    # 60 items at 0.01 items/s: 6,000 s, so a deadline an hour away is missed by 2,400 s.
    assert "Estimated duration: about 1h 40m at 0.01 items/s (the pace of the last 1 succeeded run)" in html
    assert "that misses the deadline by 40m 00s." in html
