"""A real browser on the job page's partition grid while a real qcluster runs the job: the cells turn green as their
partitions finish (no reload), hovering a cell words its bounds, attempts and worker, and clicking one lists just
its partitions, a filter the live poll keeps; and a 10k-partition job's grid of buckets, drawn and worded by the
browser (its picture is docs/partition-grid.png, in docs/explanation/console.md)."""

import contextlib

from django.db import connection
from django.urls import reverse

from partitions.core.exceptions import InvalidTransition
from partitions.core.states import JOB_CANCELLABLE
from partitions.models import Job
from partitions.operations import services
from tests.factories import make_job
from tests.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    BROWSER_TEST,
    CHROMIUM,
    browser_page,
    cluster,
    csp_watch,
    docs_picture,
    signed_in,
    start_invoices,
)

pytestmark = BROWSER_TEST

CELLS = "[data-partition-grid] i[data-seq]"


def cell_classes(page) -> list[str]:
    return page.eval_on_selector_all(CELLS, "cells => cells.map(c => c.classList[0])")


def test_the_grid_follows_a_running_job_words_a_cell_on_hover_and_filters_the_table_on_click(
    live_server, browser_page, csp_watch, cluster, settings, admin_env,  # noqa: F811
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=200)  # 10 partitions of 20 invoices

    start_invoices(page, base, period="2027-03", work_ms=200, fail_rate=0, max_parallel=1)
    job = Job.objects.order_by("-id").first()
    page.evaluate("window.__loadedOnce = true")
    page.wait_for_selector("[data-partition-grid]")
    assert len(cell_classes(page)) == 10
    before = cell_classes(page)
    assert before[-1] == "pending", before

    # Cells change colour in place as partitions finish: more of them green than at first, with no reload.
    page.wait_for_function("([sel, n]) => [...document.querySelectorAll(sel)].filter("
                           "c => c.classList.contains('succeeded')).length > n",
                           arg=[CELLS, max(before.count("succeeded"), 1)])
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded instead of refreshing the grid"

    # Hover words the cell: its seq, status, progress, bounds (20 sub-jobs) and attempt.
    first = page.locator(CELLS).first
    first.hover()
    title = first.get_attribute("title")
    assert title.startswith("#0 succeeded · 100% · 20 sub-jobs · attempt 1/"), title
    running = page.locator(f"{CELLS}.running").first
    if running.count():
        running.hover()
        assert "worker " in (running.get_attribute("title") or "")
    page.locator("#pj-grid").screenshot(path=str(ARTIFACTS / "partition-grid-live.png"))

    # A click lists just that cell's partitions, and the filter holds through the next live polls.
    page.locator(CELLS).nth(3).click()
    page.wait_for_url("**pseq=3**")
    rows = "[data-pj-section=partitions] tbody tr"
    assert page.locator(rows).count() == 1 and page.locator(f"{rows} td").first.inner_text().strip() == "3"
    assert page.locator(f"{CELLS}.sel").get_attribute("data-seq") == "3"
    polls = int(page.get_attribute("[data-pj-polls]", "data-pj-polls") or 0)
    page.wait_for_function("n => +document.querySelector('[data-pj-polls]').getAttribute('data-pj-polls') > n + 1",
                           arg=polls)
    assert page.locator(rows).count() == 1 and page.locator(f"{CELLS}.sel").count() == 1
    page.click("#pj-seq-filter a")
    page.wait_for_function("sel => document.querySelectorAll(sel).length === 10", arg=rows)

    assert csp_watch() == [], "the Content-Security-Policy blocked something"
    job.refresh_from_db()
    if job.status in JOB_CANCELLABLE:
        with contextlib.suppress(InvalidTransition):  # it may reach finalizing meanwhile: it ends by itself then
            services.job_cancel(job.pk, actor="test", reason="seen enough")


# 10k partitions of 10 items, as a job 60% through: 0-5999 succeeded but every 997th failed (after 3 attempts),
# 6000-6039 running (2-9 items done), the rest pending.
SQL_10K_PARTITIONS = """
    INSERT INTO partitions_partition (job_id, seq, kind, scope, status, estimated_items, done_items, failed_items,
        skipped_items, attempts, max_attempts, available_at, lease_owner, lease_token, lease_expires_at,
        started_at, finished_at, last_error, last_traceback)
    SELECT %(job)s, g, 'items', '{}'::jsonb,
        CASE WHEN g < 6000 AND g %% 997 = 0 THEN 'failed' WHEN g < 6000 THEN 'succeeded'
             WHEN g < 6040 THEN 'running' ELSE 'pending' END,
        10, CASE WHEN g < 6000 AND g %% 997 = 0 THEN 9 WHEN g < 6000 THEN 10 WHEN g < 6040 THEN 2 + g %% 8 ELSE 0 END,
        CASE WHEN g < 6000 AND g %% 997 = 0 THEN 1 ELSE 0 END, 0,
        CASE WHEN g < 6000 AND g %% 997 = 0 THEN 3 WHEN g < 6040 THEN 1 ELSE 0 END, 3, now(),
        CASE WHEN g >= 6000 AND g < 6040 THEN 'worker-' || (g %% 4) || ':4242:q' ELSE '' END, 1,
        CASE WHEN g >= 6000 AND g < 6040 THEN now() + interval '60 seconds' END,
        CASE WHEN g < 6040 THEN now() END, CASE WHEN g < 6000 THEN now() END,
        CASE WHEN g < 6000 AND g %% 997 = 0 THEN 'smtp timeout' ELSE '' END, ''
    FROM generate_series(0, 9999) g
"""


def test_a_10k_partition_grid_draws_1000_buckets_and_words_a_bucket_on_hover(
    live_server, browser_page, csp_watch, settings, admin_env,  # noqa: F811
):
    page, base = browser_page, live_server.url
    signed_in(page, base, settings, customers=1)
    job = make_job(status="running", type_name="billing.send_invoices", params={"period": "2027-04"})
    with connection.cursor() as cursor:
        cursor.execute(SQL_10K_PARTITIONS, {"job": job.pk})
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(base + reverse("admin:partitions_job_change", args=[job.pk]))
    page.wait_for_selector("[data-partition-grid]")
    classes = cell_classes(page)
    assert len(classes) == 1_000 and page.get_attribute("[data-partition-grid]", "data-cell-size") == "10"
    assert classes[0] == "failed" and classes[1] == "succeeded" and classes[600:604] == ["running"] * 4
    assert classes[604:] == ["pending"] * 396

    page.locator(CELLS).first.hover()
    assert page.locator(CELLS).first.get_attribute("title") == (
        "#0\u20139: 1 failed, 9 succeeded · 100% · 100 sub-jobs · attempts ≤ 3/3")
    page.locator(CELLS).nth(601).hover()
    worded = page.locator(CELLS).nth(601).get_attribute("title")
    assert worded.startswith("#6010\u20136019: 10 running · ") and " · worker worker-" in worded
    assert "(+9 more)" in worded
    # The grid fits the content's width: no sideways scroll at 1280 px.
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.mouse.move(0, 0)
    page.locator("#pj-grid").screenshot(path=str(docs_picture("partition-grid.png")))
    assert csp_watch() == []
