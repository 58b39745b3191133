"""A real browser on a job page while its job is throttled and then ends: the page reads "late … limited by the
rate limit", and the job's end takes its running-job controls away without a reload."""

from datetime import timedelta

from django.db import connection
from django.urls import reverse

from partitions.models import Job
from partitions.operations import services
from tests.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    BROWSER_TEST,
    CHROMIUM,
    browser_page,
    cluster,
    csp_watch,
    signed_in,
    wait_for_status,
)

pytestmark = BROWSER_TEST

RUNNING_JOB_CONTROLS = ("pause", "cancel", "throttle", "knob")


def hidden(page, control: str) -> bool:
    """Not shown: hidden, and not displayed (a display rule must not bring it back)."""
    return page.locator(f'[data-job-control="{control}"]').first.is_hidden()


def text_of(page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_a_throttled_late_job_says_so_and_loses_its_running_controls_when_it_ends_while_open(
    live_server, browser_page, csp_watch, cluster, settings, admin_env,  # noqa: F811
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=400)
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
    job, _ = services.job_start("billing.send_invoices", {"period": "2027-03", "work_ms": 100, "fail_rate": 0},
                                actor="test", max_parallel=2, deadline=now + timedelta(minutes=3))
    page.goto(base + reverse("admin:partitions_job_change", args=[job.pk]))
    wait_for_status(page, "Running")
    page.evaluate("window.__loadedOnce = true")
    assert all(not hidden(page, c) for c in RUNNING_JOB_CONTROLS)
    assert hidden(page, "retry_subjobs") and hidden(page, "retry_failed"), "nothing failed: nothing to retry"

    # Throttled to 1 item/s, the ~390 items left need minutes past the deadline; more workers cannot help.
    services.job_throttle(job.pk, actor="test", rate_limit=1.0)
    page.wait_for_function(
        "() => { const t = document.querySelector('#pj-projection').textContent;"
        " return t.includes('late') && t.includes('limited by the rate limit of 1.0 items/s'); }")
    assert "workers" not in text_of(page, "#pj-workers-needed")
    assert text_of(page, "#pj-workers-needed").startswith("a rate limit of")
    page.screenshot(path=ARTIFACTS / "job-page-throttled.png", full_page=True)

    services.job_cancel(job.pk, actor="test", reason="seen enough")
    wait_for_status(page, "Cancelled")
    assert all(hidden(page, c) for c in RUNNING_JOB_CONTROLS), "running-job controls after the end"
    assert hidden(page, "retry_subjobs") and hidden(page, "retry_failed")
    assert not hidden(page, "rerun")
    assert "not met: cancelled at" in text_of(page, "#pj-projection")
    assert text_of(page, "#pj-outcome") == "Cancelled by test: seen enough"
    assert page.locator("#pj-error").first.is_hidden(), "a cancel reason is not an error"
    assert "of 1.0 items/s allowed" not in text_of(page, "#pj-throttle"), "an ended job's average is no reading"
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded instead of refreshing in place"
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    page.screenshot(path=ARTIFACTS / "job-page-cancelled.png", full_page=True)
    assert csp_watch() == []
