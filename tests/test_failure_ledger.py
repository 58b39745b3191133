"""The item failure ledger: reasons (partitions.jobtypes.reasons), what the worker writes with each outcome, the
groups and pages (partitions.reads.ledger), and the operators' retry and skip of one reason (services)."""

from __future__ import annotations

import pytest

from partitions.core.exceptions import InvalidParams, InvalidTransition, SkipItem, UnknownReason
from partitions.jobtypes.reasons import REASON_MAX_LENGTH, failure_of, normalised, reason_of
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.operations import services
from partitions.reads import ledger
from partitions.reads.statistics import job_run_statistics
from tests.factories import make_job, make_partition, make_subjob
from tests.support import planned_job, run_to_end

pytestmark = pytest.mark.django_db

NO_ADDRESS = "ValueError: customer <n> has no address"
NO_TAX = "LookupError: no tax rate for region <n>"
OPTED_OUT = "SkipItem: customer <n> opted out"


def test_a_reason_is_the_class_and_the_message_with_numbers_uuids_and_hex_tokens_replaced():
    assert failure_of(ValueError("customer 4711 has no address")) == ("ValueError", NO_ADDRESS)
    assert failure_of(ValueError("customer 12 has no address")) == ("ValueError", NO_ADDRESS)
    assert failure_of(KeyError("x"))[1] == "KeyError: 'x'"
    assert normalised("order 0b5c1f9e-6d2a-4c3b-9f1e-2a3b4c5d6e7f of deadbeef00112233aa  failed\n twice") == (
        "order <uuid> of <hex> failed twice")
    assert normalised("id ١٢٣") == "id ١٢٣"  # only ASCII digits vary
    assert reason_of("TimeoutError", "") == "TimeoutError"
    assert failure_of(SkipItem("customer 7 opted out")) == ("SkipItem", OPTED_OUT)
    long = reason_of("ValueError", "word " * 200)
    assert len(long) == REASON_MAX_LENGTH and long.endswith("\u2026")


@pytest.fixture
def failed_job(no_dispatcher):
    """tests.two_failures over 50 items, run to its end in this process: 5 + 5 failed for two reasons, 5 skipped."""
    job = run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))
    assert job.status == "failed"
    return job


def test_the_worker_writes_each_failed_or_skipped_item_with_its_class_reason_and_when_it_was_seen(failed_job):
    rows = SubJob.objects.filter(job=failed_job, status__in=["failed", "skipped"])
    assert rows.count() == 15
    for row in rows:
        assert row.reason in {NO_ADDRESS, NO_TAX, OPTED_OUT}
        assert row.error_class == row.reason.split(":")[0]
        assert row.first_seen_at is not None and row.first_seen_at == row.last_seen_at
        assert row.attempts == 1
    ok = SubJob.objects.filter(job=failed_job, status="succeeded")
    assert ok.count() == 35
    assert not (ok.exclude(reason="").exists() or ok.exclude(error_class="").exists()
                or ok.exclude(first_seen_at=None).exists())


def test_a_failed_row_of_a_range_job_is_recorded_with_its_reason(no_dispatcher):
    from tests.support import seed

    seed(subscriptions=200)
    job = run_to_end(planned_job("tests.flaky_rows", {"partitions": 2}))
    rows = SubJob.objects.filter(job=job, status="failed")
    assert rows.count() == 8
    assert {(r.error_class, r.reason) for r in rows} == {("ValueError", "ValueError: row <n> rejected")}
    assert all(r.first_seen_at is not None and r.last_seen_at == r.first_seen_at for r in rows)


def test_groups_count_each_reason_with_its_share_first_example_and_seen_times(failed_job, django_assert_num_queries):
    with django_assert_num_queries(1):
        groups = ledger.job_failure_groups(failed_job.pk)
    assert (groups.total, groups.reasons, groups.more) == (15, 3, 0)
    by_reason = {g.reason: g for g in groups.groups}
    assert set(by_reason) == {NO_ADDRESS, NO_TAX, OPTED_OUT}
    tax = by_reason[NO_TAX]
    assert (tax.count, tax.failed, tax.skipped, tax.error_class) == (5, 5, 0, "LookupError")
    assert tax.share == pytest.approx(1 / 3)
    assert (tax.example_key, tax.example_error) == ("item-2", "LookupError: no tax rate for region 2")
    assert tax.first_seen <= tax.last_seen
    assert (by_reason[OPTED_OUT].failed, by_reason[OPTED_OUT].skipped) == (0, 5)
    assert ledger.job_failure_groups(failed_job.pk, limit=2).more == 1
    # The run statistics' failures by class read the same class column (failed items only: a skip is no failure).
    classes = {row["error_class"]: row["count"] for row in job_run_statistics(failed_job)["failures_by_class"]}
    assert classes == {"LookupError": 5, "ValueError": 5}


def test_keyset_pages_list_every_item_once_in_reason_then_id_order(failed_job):
    seen, after = [], None
    while page := ledger.job_failed_items(failed_job.pk, after_id=after, limit=4):
        seen += page
        after = page[-1].id
    assert [(i.reason, i.id) for i in seen] == sorted((i.reason, i.id) for i in seen)
    assert len({i.id for i in seen}) == len(seen) == 15
    one = ledger.job_failed_items(failed_job.pk, reason=NO_TAX, limit=3)
    rest = ledger.job_failed_items(failed_job.pk, reason=NO_TAX, after_id=one[-1].id, limit=3)
    assert [i.key for i in one + rest] == [f"item-{i}" for i in (2, 12, 22, 32, 42)]
    assert ledger.job_failed_items(failed_job.pk, status="skipped", limit=50) == list(
        ledger.job_failed_items_all(failed_job.pk, reason=OPTED_OUT, page=2))


def test_csv_has_one_row_per_failed_or_skipped_item_with_its_reason_and_quotes_formulas(failed_job):
    import csv

    lines = list(ledger.csv_lines(failed_job.pk, ledger.job_failed_items_all(failed_job.pk, page=4)))
    rows = list(csv.DictReader(lines))
    assert len(rows) == 15 and {r["reason"] for r in rows} == {NO_ADDRESS, NO_TAX, OPTED_OUT}
    assert {r["key"] for r in rows if r["reason"] == NO_TAX} == {f"item-{i}" for i in (2, 12, 22, 32, 42)}
    assert all(r["job"] == str(failed_job.pk) and r["first_seen"] for r in rows)
    SubJob.objects.filter(job=failed_job, key="item-2").update(key="=HYPERLINK(1)")
    rows = list(csv.DictReader(ledger.csv_lines(failed_job.pk, ledger.job_failed_items_all(failed_job.pk))))
    assert "'=HYPERLINK(1)" in {r["key"] for r in rows}


def test_retrying_one_reason_reruns_only_its_items_and_the_job_runs_again(failed_job, no_dispatcher):
    moved = services.subjobs_retry(failed_job.pk, actor="test", reason=NO_ADDRESS)
    assert moved == 5
    assert Job.objects.get(pk=failed_job.pk).status == "running"
    assert SubJob.objects.filter(job=failed_job, status="pending").count() == 5
    assert JobEvent.objects.get(job=failed_job, type="subjobs_retried").data == {"count": 5, "reason": NO_ADDRESS}
    job = run_to_end(failed_job)
    again = SubJob.objects.filter(job=job, key__in=[f"item-{i}" for i in (1, 11, 21, 31, 41)])
    assert {(s.status, s.attempts, s.reason) for s in again} == {("succeeded", 2, "")}
    assert all(s.first_seen_at is not None for s in again)  # first seen stays: it did fail once
    groups = {g.reason: g.count for g in ledger.job_failure_groups(job.pk).groups}
    assert groups == {NO_TAX: 5, OPTED_OUT: 5}
    assert not SubJob.objects.filter(job=job, reason=NO_TAX, attempts__gt=1).exists()


def test_skipping_one_reason_with_a_note_moves_its_failed_items_and_counters_and_audits_the_user(failed_job, operator):
    before = {p.pk: (p.failed_items, p.skipped_items) for p in Partition.objects.filter(job=failed_job)}
    assert services.subjobs_skip(failed_job.pk, reason=NO_TAX, note="no tax in 2026", actor=operator) == 5
    skipped = SubJob.objects.filter(job=failed_job, reason=NO_TAX)
    assert {(s.status, s.note) for s in skipped} == {("skipped", "no tax in 2026")}
    after = {p.pk: (p.failed_items, p.skipped_items) for p in Partition.objects.filter(job=failed_job)}
    assert sum(f for f, _ in after.values()) == sum(f for f, _ in before.values()) - 5
    assert sum(s for _, s in after.values()) == sum(s for _, s in before.values()) + 5
    audit = JobEvent.objects.get(job=failed_job, type="subjobs_skipped")
    assert (audit.actor_user, audit.data) == (operator, {"count": 5, "reason": NO_TAX, "note": "no tax in 2026"})
    assert Job.objects.get(pk=failed_job.pk).status == "failed"  # a skip settles items, it runs nothing
    assert services.subjobs_skip(failed_job.pk, reason=NO_TAX, note="again", actor=operator) == 0


@pytest.mark.parametrize(("reason", "note", "error"), [
    (NO_TAX, "", InvalidParams), (NO_TAX, "   ", InvalidParams), (NO_TAX, "x" * 1001, InvalidParams),
    ("LookupError: no tax rate for region", "n", UnknownReason), ("nul\x00", "n", UnknownReason),
    ("", "n", UnknownReason), ("x" * 5000, "n", UnknownReason),
])
def test_a_bad_skip_is_one_clear_error_and_writes_nothing(failed_job, reason, note, error):
    events = JobEvent.objects.count()
    with pytest.raises(error) as raised:
        services.subjobs_skip(failed_job.pk, reason=reason, note=note, actor="test")
    assert "\n" not in str(raised.value)
    assert JobEvent.objects.count() == events
    assert not SubJob.objects.filter(job=failed_job, note__gt="").exists()


def test_an_unknown_reason_names_the_closest_and_a_retry_of_it_writes_nothing(failed_job):
    with pytest.raises(UnknownReason, match="did you mean 'LookupError: no tax rate for region <n>'"):
        services.subjobs_retry(failed_job.pk, actor="test", reason="LookupError: no tax rate for regions <n>")
    assert Job.objects.get(pk=failed_job.pk).status == "failed"
    assert not SubJob.objects.filter(job=failed_job, status="pending").exists()


@pytest.mark.parametrize("status", ["succeeded", "cancelled", "pending"])
def test_retry_and_skip_of_a_reason_are_refused_where_the_job_status_does_not_allow_them(status):
    job = make_job(status=status)
    make_subjob(make_partition(job), status="failed", reason=NO_TAX)
    with pytest.raises(InvalidTransition):
        services.subjobs_skip(job.pk, reason=NO_TAX, note="n", actor="test")
    with pytest.raises(InvalidTransition):
        services.subjobs_retry(job.pk, actor="test", reason=NO_TAX)
    assert SubJob.objects.get(job=job).status == "failed"


def test_migration_0010_gives_items_failed_before_the_ledger_their_reason_from_their_error_line():
    from importlib import import_module

    from django.apps import apps

    backfill = import_module("partitions.migrations.0010_subjob_failure_ledger").backfill_reasons
    partition = make_partition(make_job(status="failed"))
    old = make_subjob(partition, seq=0, status="failed", error="ValueError: customer 12 has no address")
    odd = make_subjob(partition, seq=1, status="skipped", error="not applicable for 3 days")
    kept = make_subjob(partition, seq=2, status="failed", error="KeyError: x", reason="already set")
    ok = make_subjob(partition, seq=3, status="succeeded")
    backfill(apps, None)
    rows = {s.pk: s for s in SubJob.objects.filter(job=partition.job)}
    assert (rows[old.pk].error_class, rows[old.pk].reason) == ("ValueError", NO_ADDRESS)
    assert rows[old.pk].first_seen_at == rows[old.pk].last_seen_at == rows[old.pk].finished_at
    assert (rows[odd.pk].error_class, rows[odd.pk].reason) == ("", "not applicable for <n> days")
    assert rows[kept.pk].reason == "already set" and rows[ok.pk].reason == ""
