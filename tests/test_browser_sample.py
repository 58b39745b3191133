"""A real browser on the start page: preview a migration's plan, press "Try on a sample", read the rows it would
change and its projection, and find the table exactly as it was."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from opsapp.billing.models import Subscription
from tests.support import seed
from tests.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    BROWSER_TEST,
    CHROMIUM,
    browser_page,
    csp_watch,
    log_in,
)
from tests.test_sample_run import checksum, engine_counts

pytestmark = BROWSER_TEST


def test_an_operator_tries_a_migration_on_a_sample_from_the_preview_and_nothing_changes(
    live_server, browser_page, csp_watch, settings, admin_env,  # noqa: F811
):
    page, base = browser_page, live_server.url
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    seed(subscriptions=400, products=2)
    User.objects.create_superuser("ops", "ops@example.com", "browser-test-password")
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(page, base)
    before, counts = checksum(Subscription), engine_counts()

    page.goto(base + reverse("admin:partitions_job_start") + "?type=billing.migrate_subscriptions")
    assert page.locator("#pj-sample").count() == 0, "the sample is offered on the preview"
    page.fill("#id_params-since", (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"))
    page.fill("#id_max_parallel", "2")
    page.click("#pj-preview")
    page.wait_for_selector("#pj-preview-result")
    page.fill("#id_sample-items", "7")
    page.click("#pj-sample")
    page.wait_for_selector("#pj-sample-result")

    assert "1 of 1 partition, 7 items (0 failed, 0 skipped)" in page.inner_text("#pj-sample-measured")
    assert page.inner_text("#pj-sample-projection").startswith("Whole job: ")
    cells = page.locator("#pj-sample-changes tbody tr").all_inner_texts()
    assert len(cells) == 7 and all("opsapp_subscription" in c and "product_version 1 -> 2" in c for c in cells)
    assert page.input_value("#id_sample-items") == "7", "the form keeps what was chosen"
    page.screenshot(path=ARTIFACTS / "start-page-sample.png", full_page=True)
    assert checksum(Subscription) == before and engine_counts() == counts
    assert csp_watch() == []
