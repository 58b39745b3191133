"""One job's figures on every surface say the same sentences: the admin job page, `jobs status` (text and
--json), the deadline alert, and the sample report and plan preview (page and CLI), all worded by
`partitions.wording.presenters`.

The job (tests.test_figures.job_at_known_progress): running, 9,000 items left at 10 items/s with max parallel 2
binding, a deadline in 5 minutes it misses by 10 minutes, and throttled (a rate limit it stays under, a pause
after each batch)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from partitions.management.sample_cli import sample_text
from partitions.models import Job, JobEvent
from partitions.operations import services
from partitions.reads.statistics import job_stats
from partitions.wording import presenters
from partitions.worker import maintenance
from partitions.worker.sample_run import Measured, SampleReport
from tests.support import seed
from tests.test_deadline_alerts import seen_since
from tests.test_figures import db_now, job_at_known_progress

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]

#: The sentences the job's figures make (the zone is the test settings' UTC).
ADVICE = "needs 6 parallel workers to meet the deadline at 5.0 items/s per worker"


def throttled_job() -> Job:
    job = job_at_known_progress()
    Job.objects.filter(pk=job.pk).update(rate_limit=100.0, pause_ms=20)
    return Job.objects.get(pk=job.pk)


def jobs(*args: str) -> str:
    out = io.StringIO()
    call_command("jobs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def page_of(user, job: Job) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()


def test_the_job_page_the_cli_and_the_deadline_alert_say_the_same_sentences(viewer):
    job = throttled_job()
    words = presenters.job_words(job_stats(job))
    assert words["projection"].startswith("projected finish ") and words["projection"].endswith(
        " UTC: 10m 00s late; limited by max parallel (2)")
    assert words["advice"] == f"{ADVICE} (now 1 in flight, max parallel 2)"
    assert words["throttle"] == "10.0 items/s of 100 items/s allowed; 20 ms pause after each batch"

    html = page_of(viewer, job)
    for name in ("projection", "advice", "throttle"):
        assert escape(words[name]) in html, name

    summary = json.loads(jobs("status", str(job.pk), "--json"))
    assert summary["words"] == words
    line = jobs("status", str(job.pk))
    assert f"  {words['throttle']}  {words['projection']}; {words['advice']}" in line

    maintenance.alert_deadlines()  # the first look at the late job starts its grace
    seen_since(job, 61)
    maintenance.alert_deadlines()
    alert = JobEvent.objects.get(job=job, type="deadline_at_risk").data
    assert {name: alert[name] for name in words} == words


def test_a_sample_of_the_same_figures_says_the_same_projection_on_the_page_and_in_the_cli():
    job = throttled_job()
    stats = job_stats(job)
    live = presenters.job_words(stats)
    report = SampleReport("tests.bump_range", [0], 3, stats.remaining_items, 2, 1, Measured(done=10, seconds=2.0),
                          [], [], stats.projection, job.deadline, job.max_parallel, job.rate_limit, stats.now)
    words = presenters.sample_words(report)
    assert words["projection"].endswith(f"; {live['projection']}"), "the live job's verdict and limit"
    assert words["advice"] == f"{ADVICE} (max parallel 2)", "nothing is in flight in a sample"
    shown = {**report.as_dict(), "words": words}

    cli = sample_text(shown)
    html = render_to_string("admin/partitions/job/sample_result.html", {"sample": shown})
    for name in ("measured", "load", "projection", "advice"):
        assert words[name] in cli, name
        assert escape(words[name]) in html, name


def test_the_plan_preview_says_the_same_counts_and_bounds_on_the_start_page_and_in_the_cli(operator):
    seed(subscriptions=60)
    plans = services.job_preview("tests.bump_range", {"partitions": "3"})
    counts = presenters.preview_counts(plans)
    bounds = [row["bounds"] for row in presenters.preview_rows(plans)]
    assert counts == "3 partitions, 60 estimated items" and bounds[0].startswith("[(-inf), (")

    client = Client()
    client.force_login(operator)
    html = client.post(reverse("admin:partitions_job_start"), {
        "job_type": "tests.bump_range", "_preview": "Preview plan", "params-partitions": "3"}).content.decode()
    text = jobs("start", "tests.bump_range", "--param", "partitions=3", "--dry-run")
    assert f"{escape(counts)}." in html and f"{counts} (dry run: nothing written)" in text
    for bound in bounds:
        assert escape(bound) in html and bound in text


def test_a_health_hold_names_its_zone_on_the_page_and_in_the_cli(viewer):
    job = throttled_job()
    Job.objects.filter(pk=job.pk).update(throttled_since=db_now() - timedelta(minutes=3),
                                         throttled_reason="replication lag")
    throttle = presenters.job_words(job_stats(Job.objects.get(pk=job.pk)))["throttle"]
    assert "; held by a health check since " in throttle and throttle.endswith(" UTC: replication lag")
    assert escape(throttle) in page_of(viewer, job)
    assert throttle in jobs("status", str(job.pk))


def test_one_plural_and_one_clip_serve_code_and_templates():
    from django.template import Context, Template

    from partitions.core import humanize, limits

    assert (humanize.plural(1, "worker"), humanize.plural(2_000, "worker")) == ("1 worker", "2,000 workers")
    assert humanize.plural(2, "item of “x”", "items of “x”") == "2 items of “x”"
    assert limits.clip("a\n  b", 10) == "a\n  b" and limits.clip("a\n  b", 10, one_line=True) == "a b"
    assert limits.clip("x" * 200, limits.CELL) == "x" * (limits.CELL - 1) + limits.ELLIPSIS
    assert limits.clip(None, limits.CELL) == ""
    rendered = Template('{% load pj_format %}{{ text|clip:"KEY" }}').render(Context({"text": "y\n" * 50}))
    assert rendered == ("y " * 20)[: limits.KEY - 1] + limits.ELLIPSIS
