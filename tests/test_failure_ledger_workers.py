"""The failure ledger end to end under a real qcluster: items failing for two reasons (and some skipped) are
exported one row per item with their reason, and a retry of one reason re-runs exactly its items."""

from __future__ import annotations

import csv

import pytest

from partitions.models import Job, SubJob
from tests.support import cli, finished, started_job
from tests.test_failure_ledger import NO_ADDRESS, NO_TAX, OPTED_OUT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ITEMS = 200


def exported(job: Job) -> list[dict]:
    code, out, err = cli("failures", str(job.pk), "--csv")
    assert (code, err) == (0, "")
    return list(csv.DictReader(out.splitlines()))


def test_failures_csv_has_one_row_per_failed_item_and_a_retry_of_one_reason_reruns_only_its_items(clusters):
    running = clusters(1)
    job = finished(started_job("tests.two_failures", {"count": ITEMS, "chunk_size": 20}), running)
    assert job.status == "failed"
    rows = exported(job)
    by_reason = {reason: {r["key"] for r in rows if r["reason"] == reason}
                 for reason in (NO_ADDRESS, NO_TAX, OPTED_OUT)}
    assert len(rows) == sum(map(len, by_reason.values())) == 3 * ITEMS // 10
    for reason, rest in ((NO_ADDRESS, 1), (NO_TAX, 2), (OPTED_OUT, 3)):
        assert by_reason[reason] == {f"item-{i}" for i in range(ITEMS) if i % 10 == rest}
    assert {r["status"] for r in rows if r["reason"] == OPTED_OUT} == {"skipped"}
    assert all(r["first_seen"] and r["last_seen"] and r["attempts"] == "1" for r in rows)

    code, out, _ = cli("retry", str(job.pk), "--reason", NO_ADDRESS)
    assert (code, out.strip()) == (0, f"job {job.pk}: {ITEMS // 10} failed sub-jobs retried")
    assert Job.objects.get(pk=job.pk).status == "running"  # reopened: the cluster runs the retry partitions
    job = finished(job, running)
    assert job.status == "failed"  # the tax rates still fail
    again = SubJob.objects.filter(job=job, attempts__gt=1)
    assert set(again.values_list("key", flat=True)) == by_reason[NO_ADDRESS]
    assert set(again.values_list("status", flat=True)) == {"succeeded"}
    assert {(r["reason"], r["key"]) for r in exported(job)} == {
        (reason, key) for reason in (NO_TAX, OPTED_OUT) for key in by_reason[reason]}
