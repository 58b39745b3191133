"""The console fits 1280 and 800 px in real Chromium: no sideways scroll of the document, and no inner
horizontal scroll box, on the job list, a job page, the schedules list, a schedule page and the Workers page.
Screenshots of each page at each width are kept under test-artifacts/widths/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

import tests.jobtypes  # noqa: F401 - registers the test job types
from partitions.models import JobEvent
from partitions.operations import knob, schedules
from partitions.operations.cadence import CRON, Cadence
from tests.factories import make_job, make_partition, make_subjob
from tests.test_browser import ARTIFACTS, BROWSER_TEST, CHROMIUM, TIMEOUT_MS, log_in

pytestmark = BROWSER_TEST

WIDTHS = (1280, 800)

#: Elements wider than their box that scroll sideways (the document itself is checked apart).
INNER_SCROLL = """() => [...document.querySelectorAll('body *')].filter(e => {
  const s = getComputedStyle(e);
  return ['auto', 'scroll'].includes(s.overflowX) && e.scrollWidth > e.clientWidth + 1;
}).map(e => (e.id || e.className || e.tagName) + ' ' + e.scrollWidth + '>' + e.clientWidth)"""


#: The innermost elements that reach past the window's right edge (what makes the document too wide).
WIDER = """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1
  && ![...e.children].some(c => c.getBoundingClientRect().right > innerWidth + 1))
  .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"""


def busy_job():
    """A job with everything a page shows: partitions in every state with long errors, failed sub-jobs, a long
    timeline with settings changes, a deadline, a summary."""
    job = make_job(status="running", max_parallel=2, deadline=timezone.now() + timedelta(hours=2),
                   stats={"summary": {"avg_ms": 51.76620223770319, "invoices_mailed_to_customers": 123456}})
    for seq, status in enumerate(["running", "pending", "succeeded", "failed", "failed"]):
        partition = make_partition(job, seq=seq, status=status,
                                   last_error="ValueError: " + "a long error message " * 12 if status == "failed"
                                   else "")
        if status == "failed":
            for n in range(3):
                make_subjob(partition, seq=seq * 10 + n, status="failed",
                            error="RuntimeError: the mail server said no " * 8,
                            reason=("RuntimeError: the mail server said no " * 8)[:300], error_class="RuntimeError")
    for cap in (3, 4, 6):
        knob.job_set(job.pk, actor="user:ops", max_parallel=cap)
    JobEvent.objects.create(job=job, type="job_note", actor="worker-with-a-long-host-name-and-pid-12345",
                            data={"reason": "x" * 300, "handled": 123456789})
    return job


@pytest.fixture
def page(live_server, settings, admin_env, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    User.objects.create_superuser("ops", "ops@example.com", "browser-test-password")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        log_in(tab, live_server.url)
        yield tab
        browser.close()


def test_the_console_pages_fit_1280_and_800_px_without_sideways_scroll(page, live_server):
    job = busy_job()
    for status in ("succeeded", "failed", "paused"):
        make_job(status=status, deadline=timezone.now() + timedelta(days=400))
    schedule = schedules.schedule_create(actor="test", name="nightly-invoices-for-every-customer-region",
                                         type_name="tests.bump_range", params={"partitions": 2},
                                         cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    pages = {
        "job-list": reverse("admin:partitions_job_changelist"),
        "job-page": reverse("admin:partitions_job_change", args=[job.pk]),
        "schedules": reverse("admin:partitions_jobschedule_changelist"),
        "schedule-page": reverse("admin:partitions_jobschedule_change", args=[schedule.pk]),
        "workers": reverse("admin:partitions_job_workers"),
    }
    out = ARTIFACTS / "widths"
    out.mkdir(parents=True, exist_ok=True)
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages.items():
            page.goto(live_server.url + url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=out / f"{name}-{width}.png", full_page=True)
            doc = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if doc[0] > doc[1]:
                problems.append(f"{name} at {width}: document {doc[0]} > {doc[1]}: {page.evaluate(WIDER)}")
            problems += [f"{name} at {width}: inner scroll {box}" for box in page.evaluate(INNER_SCROLL)]
    assert problems == [], "\n".join(problems)
