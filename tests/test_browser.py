"""A real browser (Debian's Chromium via Playwright) against a live server and a real qcluster."""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.urls import reverse

from opsapp.billing.models import Invoice
from opsapp.billing.seeding import seed_demo
from partitions.models import Job
from partitions.operations import services
from tests.support import Cluster, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def docs_picture(name: str) -> Path:
    """Where a browser test saves a picture of the docs: docs/ when asked (`UPDATE_DOCS=1`), otherwise
    test-artifacts/, so a test run leaves the tree as it found it."""
    folder = Path(__file__).resolve().parent.parent / "docs" if os.environ.get("UPDATE_DOCS") else ARTIFACTS
    folder.mkdir(exist_ok=True)
    return folder / name
TIMEOUT_MS = int(os.environ.get("BROWSER_TIMEOUT_MS", "120000"))

#: The marks of every browser test module (`pytestmark = BROWSER_TEST`).
BROWSER_TEST = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Debian chromium (make test installs it as root)"),
]
pytestmark = BROWSER_TEST


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; our ORM calls here are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
        ])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


@pytest.fixture
def csp_watch(browser_page):
    """What the Content-Security-Policy refused on any page of the test, from console messages and from
    securitypolicyviolation events (collected here, so they survive navigations)."""
    console: list[str] = []
    violations: list[str] = []
    browser_page.on("console", lambda message: console.append(message.text))
    browser_page.expose_function("reportCspViolation", lambda text: violations.append(text))
    browser_page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => window.reportCspViolation(e.violatedDirective + ' ' + e.blockedURI + ' on ' + e.documentURI));"
    )

    def refused() -> list[str]:
        return [text for text in console if "Content Security Policy" in text or "Refused to" in text] + violations

    return refused


def assert_nonced_under_csp(page, response) -> None:
    """The document came with a nonce policy, and the page's scripts carry that nonce (read as the DOM property:
    browsers hide the nonce attribute from getAttribute)."""
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self' 'nonce-" in policy, policy
    nonces = page.evaluate("[...document.scripts].map(s => s.nonce)")
    assert nonces and all(f"'nonce-{n}'" in policy for n in nonces), (nonces, policy)


@pytest.fixture
def cluster(db_url, tmp_path):
    connections.close_all()
    running = Cluster(db_url, tmp_path / "qcluster.log", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
                      PARTITIONS_NOTIFY='{"email": ["ops@example.com"]}')
    yield running
    running.stop()


def status_text(page) -> str:
    return page.locator("[data-job-status]").first.inner_text().strip()


def start_invoices(page, base: str, *, period: str, work_ms: int, fail_rate: float, max_parallel: int):
    """Start a run from the start page; returns the response of the job page it lands on."""
    page.goto(base + reverse("admin:partitions_job_start") + "?type=billing.send_invoices")
    page.fill("#id_params-period", period)
    page.fill("#id_params-work_ms", str(work_ms))
    page.fill("#id_params-fail_rate", str(fail_rate))
    page.fill("#id_max_parallel", str(max_parallel))
    with page.expect_response(lambda r: r.request.resource_type == "document" and r.status == 200) as landed:
        page.click("#pj-start")
    page.wait_for_selector("[data-job-status]")
    return landed.value


def log_in(page, base: str) -> None:
    page.goto(base + "/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "browser-test-password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def wait_for_status(page, status: str) -> None:
    page.wait_for_function(
        "s => [...document.querySelectorAll('[data-job-status]')].some(e => e.textContent.trim() === s)",
        arg=status, timeout=TIMEOUT_MS,
    )


def signed_in(page, base: str, settings, *, customers: int) -> None:
    """Demo customers, and an operator signed in over plain HTTP."""
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    seed_demo(products=1, subscriptions=0, customers=customers, events=0)
    User.objects.create_superuser("ops", "ops@example.com", "browser-test-password")
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(page, base)


def test_an_operator_starts_a_run_watches_it_finish_and_recovers_a_failed_one(
    live_server, browser_page, csp_watch, cluster, settings, admin_env, capsys,
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=60)

    # A clean run: the bar fills and the status changes while the page stays loaded, under the CSP.
    job_page = start_invoices(page, base, period="2026-11", work_ms=150, fail_rate=0, max_parallel=1)
    assert_nonced_under_csp(page, job_page)
    page.evaluate("window.__loadedOnce = true")
    first_percent = page.locator('[data-job-field="percent"]').first.inner_text()
    page.wait_for_function(
        "() => document.querySelector('[data-job-field=\"percent\"]').textContent.includes('100.0%')",
        timeout=TIMEOUT_MS,
    )
    wait_for_status(page, "Succeeded")
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded instead of refreshing in place"
    assert first_percent != "100.0%", "the run should still be going when the page first loads"
    job = Job.objects.order_by("-id").first()
    assert job.status == "succeeded"
    page.wait_for_selector("#pj-summary")
    # Every step was notified (by e-mail here, through the outbox); polling stopped at the end, so reload.
    wait_for(lambda: job.deliveries.filter(kind="job_succeeded", status="sent").exists(), timeout=60,
             what="the job_succeeded notification", clusters=[cluster])
    page.reload()
    assert page.locator("[data-pj-section=notifications] .pj-delivery-sent").count() == 7
    page.screenshot(path=ARTIFACTS / "job-page.png", full_page=True)

    # A run with failures, recovered with one button (and its confirmation step).
    start_invoices(page, base, period="2026-12", work_ms=10, fail_rate=0.3, max_parallel=0)
    wait_for_status(page, "Failed")
    page.click('form[data-job-action="retry_subjobs"] button, form[data-job-action="retry_subjobs"] input[type=submit]')
    page.click("#pj-confirm")
    wait_for_status(page, "Succeeded")
    assert Invoice.objects.filter(period="2026-12", mailed_at__isnull=False).count() == 60

    page.goto(base + reverse("admin:partitions_job_changelist"))
    page.wait_for_selector(".pj-progress")
    page.screenshot(path=ARTIFACTS / "job-list.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "the job list scrolls sideways at 1280 px"
    page.set_viewport_size({"width": 1440, "height": 1000})
    assert csp_watch() == [], "the Content-Security-Policy blocked something"
    with capsys.disabled():
        print(f"\nscreenshots: {ARTIFACTS / 'job-list.png'} {ARTIFACTS / 'job-page.png'}")


def live_leases(page) -> str:
    return page.locator('[data-job-field="live_leases"]').first.inner_text().strip()


def wait_for_leases(page, text: str) -> None:
    page.wait_for_function("n => document.querySelector('[data-job-field=\"live_leases\"]').textContent.trim() === n",
                           arg=text)


def test_the_whole_job_page_moves_without_a_reload_and_the_knob_changes_the_leases_in_flight(
    live_server, browser_page, csp_watch, cluster, settings, admin_env,
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=400)

    start_invoices(page, base, period="2027-01", work_ms=250, fail_rate=0, max_parallel=1)
    job = Job.objects.order_by("-id").first()
    page.evaluate("window.__loadedOnce = true")
    timeline_rows = page.locator("[data-pj-section=timeline] tbody tr").count()

    # Partitions, timeline and chart change in place, from the same poll as the header.
    page.wait_for_selector("[data-pj-section=partitions] .pj-status-succeeded")
    page.wait_for_function("n => document.querySelectorAll('[data-pj-section=timeline] tbody tr').length > n",
                           arg=timeline_rows)
    page.wait_for_selector("[data-pj-section=chart] svg.pj-chart polyline", timeout=30_000)
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded instead of refreshing in place"
    assert page.locator("[data-pj-section=facts]").inner_text().count("\u2014") <= 2, "started, duration …"

    # The time/cost knob: two partitions in flight, then one again (at the next batch of the other).
    assert live_leases(page) == "1"
    page.fill("#id_max_parallel", "2")
    page.click("#pj-knob-submit")
    wait_for_leases(page, "2")
    assert "max parallel 2" in page.locator(".messagelist").inner_text()
    page.screenshot(path=ARTIFACTS / "job-page-live.png", full_page=True)
    page.fill("#id_max_parallel", "1")
    page.click("#pj-knob-submit")
    wait_for_leases(page, "1")
    changes = [e.data["max_parallel"] for e in job.events.filter(type="job_settings_changed").order_by("id")]
    assert changes == [[1, 2], [2, 1]]
    assert csp_watch() == [], "the Content-Security-Policy blocked something"
    services.job_cancel(job.pk, actor="test", reason="seen enough")
    wait_for_status(page, "Cancelled")


def test_an_operator_schedules_a_run_from_the_start_page_runs_it_now_and_reads_its_history(
    live_server, browser_page, csp_watch, settings, admin_env,
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=5)
    page.goto(base + reverse("admin:partitions_job_start") + "?type=billing.send_invoices")
    page.fill("#id_params-period", "2026-11")
    page.click("#pj-preview")  # the same preview as for a run now
    page.wait_for_selector("#pj-preview-result")
    page.click("#pj-schedule summary")
    page.fill("#id_schedule-name", "nightly-invoices")
    page.select_option("#id_schedule-kind", "cron")
    page.fill("#id_schedule-cron", "0 2 * * *")
    page.fill("#id_schedule-timezone", "Europe/Madrid")
    page.fill("#id_schedule-deadline_offset", "+90m")
    page.click("#pj-schedule-submit")
    page.wait_for_selector("#pj-schedule-facts")
    assert "cron 0 2 * * * (Europe/Madrid)" in page.inner_text("#pj-schedule-facts")

    page.click("[data-schedule-action=run_now] button")  # POST, then the confirm page
    page.click("#pj-confirm")
    page.wait_for_selector("#pj-schedule-history .pj-event-fire_started a")
    job = Job.objects.get(dedupe_key="schedule:nightly-invoices")
    history = page.locator("#pj-schedule-history .pj-event-fire_started a").first
    assert history.get_attribute("href") == reverse("admin:partitions_job_change", args=[job.pk])
    page.screenshot(path=str(ARTIFACTS / "schedule-page.png"), full_page=True)

    page.goto(base + reverse("admin:partitions_jobschedule_changelist"))
    row = page.locator("#result_list tbody tr").first
    assert "nightly-invoices" in row.inner_text() and f"#{job.pk}" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "schedules-list.png"), full_page=True)
    assert csp_watch() == []
