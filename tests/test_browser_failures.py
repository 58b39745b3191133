"""A real browser on the job page's Failures section: the reason groups of a job whose items failed for two reasons
(and some were skipped), the reason filter leading to the item list, and "Skip with note" through its confirm page;
its picture is docs/failure-groups.png, in docs/howto/failures.md."""


from django.urls import reverse

from partitions.models import JobEvent, SubJob
from tests.support import dispatcher_off, planned_job, run_to_end
from tests.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    BROWSER_TEST,
    CHROMIUM,
    browser_page,
    csp_watch,
    docs_picture,
    signed_in,
)
from tests.test_failure_ledger import NO_ADDRESS, NO_TAX

pytestmark = BROWSER_TEST

GROUPS = "[data-failure-groups] tbody tr"


def test_an_operator_reads_the_failure_groups_filters_one_reason_and_skips_it_with_a_note(
    live_server, browser_page, csp_watch, settings, admin_env,  # noqa: F811
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=1)
    with dispatcher_off():
        job = run_to_end(planned_job("tests.two_failures", {"count": 400, "chunk_size": 40}))
    page.set_viewport_size({"width": 1280, "height": 1000})
    job_page = base + reverse("admin:partitions_job_change", args=[job.pk])
    page.goto(job_page + "#pj-failures")
    page.wait_for_selector(GROUPS)
    assert page.locator(GROUPS).count() == 3
    assert "Failures (120 items, 3 reasons)" in page.inner_text("#pj-failures h2")

    # The reason filter lists that reason's items (keyset pages), and the way back.
    page.select_option("[data-failure-filter] select[name=reason]", NO_ADDRESS)
    page.click("[data-failure-filter] button[type=submit]")
    page.wait_for_selector("[data-failure-items]")
    keys = page.eval_on_selector_all("[data-failure-items] tbody tr td:first-child", "tds => tds.map(t => t.innerText)")
    assert keys[:3] == ["item-1", "item-11", "item-21"] and len(keys) == 40
    page.goto(job_page + "#pj-failures")

    # Skip with note: a confirm page that needs the note, then the group reads as skipped.
    page.locator(f'{GROUPS}[data-reason="{NO_TAX}"] a:has-text("Skip with note")').click()
    page.wait_for_selector("#pj-note")
    assert "This touches 40 items." in page.inner_text("#content-main")
    page.fill("#pj-note", "no tax rates before 2027: settled with finance")
    page.click("#pj-confirm")
    page.wait_for_selector(GROUPS)
    assert "40 failed items of" in page.inner_text(".messagelist")
    assert "0 failed, 40 skipped" in page.inner_text(f'{GROUPS}[data-reason="{NO_TAX}"]')
    assert set(SubJob.objects.filter(job=job, reason=NO_TAX).values_list("status", "note")) == {
        ("skipped", "no tax rates before 2027: settled with finance")}
    assert JobEvent.objects.get(job=job, type="subjobs_skipped").actor == "user:ops"
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#pj-failures").screenshot(path=str(docs_picture("failure-groups.png")))
    assert csp_watch() == []
