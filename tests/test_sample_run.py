"""The sample dry-run (`jobs start … --dry-run --sample N`, partitions/worker/sample_run.py): the job type's real code
on sampled partitions in a transaction that is always rolled back. Each test checks what the sample reports AND
that nothing stayed: a checksum of the changed table(s) and the row counts of every engine table."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import timedelta

import psycopg
import pytest
from django.apps import apps
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from opsapp.billing import broker
from opsapp.billing.models import Event, Invoice, Product, Subscription
from partitions.core.exceptions import JobCodeError, JobTypeNotFound
from partitions.jobtypes.base import JobType
from partitions.reads.projection import MAX_PARALLEL, RATE_LIMIT
from partitions.worker import sample_run
from partitions.worker.sample_run import SampleFailed, SampleRefused, job_sample, spread
from tests.jobtypes import RECORDER
from tests.support import cli, seed

pytestmark = pytest.mark.usefixtures("no_dispatcher")


def checksum(model) -> str:
    """Every row of the model's table, in id order, hashed: equal only if no row changed, appeared or went."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t")
        return cursor.fetchone()[0]


def engine_counts() -> dict[str, int]:
    """Rows in each of the engine's tables (jobs, partitions, sub-jobs, events, samples, outbox, …)."""
    return {model.__name__: model.objects.count() for model in apps.get_app_config("partitions").get_models()}


def sample_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("jobs", "start", *args, "--dry-run", "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def since_changed() -> str:
    """--param since: the seeded products that changed recently (their subscriptions are stale)."""
    return (timezone.now() - timedelta(days=1)).isoformat()


@pytest.mark.django_db(transaction=True)
def test_migrate_sample_prints_the_changes_and_projection_and_leaves_the_table_as_it_was():
    seed(subscriptions=600, products=2)
    before, counts = checksum(Subscription), engine_counts()
    changed = Product.objects.get(version=2)
    result = sample_json("billing.migrate_subscriptions", "--param", f"since={since_changed()}",
                         "--param", "rows_per_partition=100", "--sample", "1", "--sample-items", "25",
                         "--max-parallel", "2")
    sample = result["sample"]
    assert checksum(Subscription) == before and engine_counts() == counts, "the sample left nothing behind"
    assert sample["rolled_back"] is True
    assert sample["items"] == sample["items_done"] == 25
    stale = list(Subscription.objects.filter(product=changed).order_by("created_at", "id")[:25])
    assert [c["pk"] for c in sample["changes"]] == [s.pk for s in stale][:sample_run.SHOWN]
    assert sample["changes_total"] == 25
    assert sample["changes"][0] == {"table": "opsapp_subscription", "pk": stale[0].pk, "op": "update",
                                    "before": {"product_version": 1}, "after": {"product_version": 2}}
    planned = sum(p["estimated_items"] for p in result["partitions"])
    assert sample["planned_items"] == planned and sample["parallel"] == 2
    assert sample["items_per_second"] > 0
    assert sample["projected_items_per_second"] == pytest.approx(2 * sample["items_per_second"])
    assert sample["projected_seconds"] == pytest.approx(planned / sample["projected_items_per_second"])
    assert sample["limited_by"] == MAX_PARALLEL
    # 25 rows in batches of 1000: one fetch and one UPDATE.
    assert sample["statements"] == 2 and sample["statements_per_item"] == pytest.approx(2 / 25)
    assert sample["statements_per_second"] == pytest.approx(2 / 25 * sample["projected_items_per_second"])
    assert sample["rows_per_item"] == pytest.approx(2.0), "25 rows read, 25 updated"


@pytest.mark.django_db
def test_the_text_report_names_the_changes_the_speed_and_the_projection():
    seed(subscriptions=200, products=2)
    before = checksum(Subscription)
    out = io.StringIO()
    call_command("jobs", "start", "billing.migrate_subscriptions", "--param", f"since={since_changed()}",
                 "--dry-run", "--sample", "1", "--sample-items", "3", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert checksum(Subscription) == before
    assert "sample: 1 of 1 partition, 3 items (0 failed, 0 skipped)" in text
    assert "items/s on one worker (rolled back: nothing written)" in text
    assert re.search(r"\n  projection: [0-9,]+ items in [0-9hms ]+ at 1 in parallel \([0-9.,]+ items/s\)\n", text)
    assert "would change 3 rows:" in text and "update: product_version 1 -> 2" in text


@pytest.mark.django_db
def test_invoice_sample_records_the_mails_instead_of_sending_them_and_shows_the_invoices():
    seed(subscriptions=0)  # five customers
    before, counts, outbox = checksum(Invoice), engine_counts(), len(mail.outbox)
    report = job_sample("billing.send_invoices", {"period": "2026-11", "work_ms": 0}, items=3)
    assert checksum(Invoice) == before and engine_counts() == counts
    assert len(mail.outbox) == outbox, "no mail went out"
    assert report.calls[0].startswith("would mail invoice 2026-11 (") and len(report.calls) == 3
    assert report.item_concurrency == 4, "run one at a time by the sample, four at once by a worker"
    assert [c.op for c in report.changes] == ["insert"] * 3
    assert {c.after["period"] for c in report.changes} == {"2026-11"}
    assert all(c.after["mailed_at"] for c in report.changes)


@pytest.mark.django_db
def test_event_sample_records_the_publishes_and_shows_the_events_it_would_mark_sent():
    seed(subscriptions=0, events=40)
    before, delivered = checksum(Event), dict(broker._delivered)
    report = job_sample("billing.dispatch_events", {"buckets": 4, "confirm_ms": 0}, partitions=2, items=5)
    assert checksum(Event) == before and broker._delivered == delivered, "nothing was published"
    assert Event.objects.filter(status=Event.Status.PENDING).count() == 40
    assert report.sampled == [0, 3] and report.measured.done == 10
    assert len(report.calls) == 10 and all(c.startswith("would publish ") for c in report.calls)
    assert {(c.before["status"], c.after["status"]) for c in report.changes} == {("pending", "sent")}


@pytest.mark.django_db
def test_failed_and_skipped_items_are_counted_and_their_errors_shown():
    RECORDER.reset()
    report = job_sample("tests.items_serial", {"count": 30, "chunk_size": 30, "fail_every": 5, "skip_every": 7},
                        items=20)
    m = report.measured
    # Among items 0..19: i % 5 == 1 fails (1, 6, 11, 16), i % 7 == 0 is skipped first (0, 7, 14).
    assert (m.done, m.failed, m.skipped) == (13, 4, 3)
    assert m.errors[0] == "item-1: ValueError: item 1 failed"
    assert len(RECORDER.timeline) == 20, "each item ran once"


@pytest.mark.django_db
def test_a_rate_limit_and_a_deadline_apply_to_the_projection_as_on_a_live_job():
    seed(subscriptions=300, products=1)
    soon = timezone.now() + timedelta(hours=1)
    report = job_sample("tests.bump_range", {"partitions": 3}, items=10, rate_limit=0.01, deadline=soon)
    p = report.projection
    assert p.limited_by == RATE_LIMIT and p.effective_rate == pytest.approx(0.01)
    assert p.eta_seconds == pytest.approx(300 / 0.01) and p.verdict == "late"
    assert p.rate_needed == pytest.approx(300 / (soon - timezone.now()).total_seconds(), rel=0.01)
    now = timezone.now()  # 1,000 items at 10/s on one worker (max parallel 1), 50 s left: 2 workers needed
    late = sample_run.projection_at(10.0, items=1000, parallel=1, max_parallel=1, rate_limit=None,
                                    deadline=now + timedelta(seconds=50), now=now)
    assert (late.limited_by, late.verdict, late.eta_seconds, late.workers_needed) == (MAX_PARALLEL, "late", 100, 2)


@pytest.mark.django_db
@pytest.mark.parametrize(("type_name", "error"), [
    ("tests.items_concurrent", "cannot sample tests.items_concurrent: it has not declared its effects"),
    ("tests.calls_out", "cannot sample tests.calls_out: it has effects outside the database (dry_run_safe = False)"),
])
def test_a_type_that_has_not_declared_safe_effects_is_refused_before_anything_runs(type_name, error):
    seed(subscriptions=50)
    RECORDER.reset()
    before, counts = checksum(Subscription), engine_counts()
    params = ["--param", "count=5", "--param", "chunk_size=5"] if "items" in type_name else []
    code, _, err = cli("start", type_name, *params, "--dry-run", "--sample", "1")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"CommandError: {error}")
    assert checksum(Subscription) == before and engine_counts() == counts and not RECORDER.timeline
    with pytest.raises(SampleRefused):
        job_sample(type_name, {"count": 5, "chunk_size": 5} if "items" in type_name else {})


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "error"), [
    (["--sample", "1"], "CommandError: --sample needs --dry-run: a sample never starts a job"),
    (["--dry-run", "--sample-items", "5"], "CommandError: --sample-items needs --sample N"),
    (["--dry-run", "--sample", "0"], "expected a number of partitions from 1 to 20, got '0'"),
    (["--dry-run", "--sample", "21"], "expected a number of partitions from 1 to 20, got '21'"),
    (["--dry-run", "--sample", "99999999999999999999999"], "expected a number of partitions from 1 to 20"),
    (["--dry-run", "--sample", "1", "--sample-items", "10001"], "expected a number of items from 1 to 10,000"),
    (["--dry-run", "--sample", "-1"], "expected a number of partitions"),
])
def test_bad_sample_options_get_one_clear_error_and_write_nothing(args, error):
    seed(subscriptions=50)
    before, counts = checksum(Subscription), engine_counts()
    code, out, err = cli("start", "tests.bump_range", *args)
    assert code in (1, 2) and error in err.strip().splitlines()[-1] and not out
    assert checksum(Subscription) == before and engine_counts() == counts


@pytest.mark.django_db
def test_an_unknown_type_and_out_of_range_sizes_are_refused_by_the_service_too():
    with pytest.raises(JobTypeNotFound):
        job_sample("tests.nope", {})
    for sizes in ({"partitions": 0}, {"partitions": 21}, {"items": 0}, {"items": 10_001}):
        with pytest.raises(sample_run.InvalidParams):
            job_sample("tests.bump_range", {"partitions": 1}, **sizes)


@pytest.mark.django_db
def test_a_job_code_failure_ends_the_sample_with_one_error_and_everything_rolled_back():
    seed(subscriptions=100)
    before, counts = checksum(Subscription), engine_counts()
    with pytest.raises(SampleFailed, match="failed \\(rolled back\\): RuntimeError: the job code broke"):
        job_sample("tests.bump_then_fail", {"partitions": 1}, items=10)
    code, _, err = cli("start", "tests.bump_then_fail", "--param", "partitions=1", "--dry-run", "--sample", "1")
    assert code == 1 and err.strip().splitlines() == [
        "CommandError: sample of tests.bump_then_fail failed (rolled back): RuntimeError: the job code broke"]
    assert checksum(Subscription) == before and engine_counts() == counts


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "reason"), [
    ("retry", "the job code asked to stop (Retry: broker busy)"),
    ("cancel", "the job code asked to stop (CancelJob: bad data found)"),
    ("crash", "RuntimeError: batch exploded"),
])
def test_a_retry_a_cancel_or_a_crash_of_the_job_code_is_the_samples_one_error(action, reason):
    seed(subscriptions=20)
    counts = engine_counts()
    with pytest.raises(SampleFailed) as refused:
        job_sample("tests.controlled", {"action": action, "partitions": 1}, items=5)
    assert str(refused.value) == f"sample of tests.controlled failed (rolled back): {reason}"
    assert engine_counts() == counts


@pytest.mark.django_db(transaction=True)
def test_a_changed_table_busy_with_a_writer_refuses_the_sample_at_the_lock_timeout(db_url):
    seed(subscriptions=50)
    before = checksum(Subscription)
    with psycopg.connect(db_url) as writer:  # an open transaction that wrote a subscription holds its lock
        writer.execute("UPDATE opsapp_subscription SET status = status WHERE id = (SELECT min(id) "
                       "FROM opsapp_subscription)")
        with pytest.raises(SampleFailed, match="lock timeout"):
            job_sample("tests.bump_range", {"partitions": 1}, items=10)
        writer.rollback()
    assert checksum(Subscription) == before


@pytest.mark.parametrize("declaration", [{"changes_models": Subscription}, {"changes_models": ("opsapp_subscription",)},
                                         {"dry_run_safe": "yes"}])
def test_a_type_that_declares_its_sample_wrongly_is_refused_at_registration(declaration):
    wrong = type("Wrong", (JobType,), {"name": "tests.wrong", **declaration})
    with pytest.raises(JobCodeError, match="dry_run_safe must be True, False or None, and changes_models a tuple"):
        wrong.check_declaration()


@pytest.mark.parametrize(("planned", "wanted", "chosen"), [
    (0, 3, []), (1, 3, [0]), (10, 1, [0]), (10, 2, [0, 9]), (10, 3, [0, 4, 9]), (4, 4, [0, 1, 2, 3]),
])
def test_the_sampled_partitions_are_spread_evenly_over_the_plan(planned, wanted, chosen):
    assert spread(planned, wanted) == chosen
    assert len(set(chosen)) == len(chosen) == min(planned, wanted)


def test_the_projection_of_a_sample_is_the_plan_over_the_sampled_rate_times_the_workers():
    now = timezone.now()
    p = sample_run.projection_at(50.0, items=10_000, parallel=4, max_parallel=0, rate_limit=None, deadline=None,
                                 now=now)
    assert p.effective_rate == pytest.approx(200.0) and p.eta_seconds == pytest.approx(50.0)
    assert p.limited_by is None and math.isclose(p.per_worker_rate, 50.0)
    idle = sample_run.projection_at(None, items=10, parallel=1, max_parallel=0, rate_limit=None, deadline=None,
                                    now=now)
    assert idle.eta_seconds is None, "no rate measured: no projection"
