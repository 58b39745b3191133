"""One lease renewer per process: every held lease renewed in one statement, lost ones marked, and no
thread (or connection) left behind once nothing is held."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from partitions import worker
from partitions.engine import claiming
from partitions.jobtypes.registry import register, unregister
from partitions.models import Partition
from partitions.worker.renewer import LeaseRenewer, renewer
from partitions.worker.run import run_partition
from tests.factories import make_job, make_partition
from tests.jobtypes import BumpRange
from tests.support import planned_job, seed

pytestmark = pytest.mark.usefixtures("no_dispatcher")


def test_every_lease_due_is_renewed_in_one_statement_and_a_taken_over_one_is_marked_lost(db):
    job = make_job(status="running")
    soon = timezone.now() + timedelta(seconds=5)
    kept, taken = (make_partition(job, seq=i, status="running", lease_token=1, lease_expires_at=soon) for i in (0, 1))
    Partition.objects.filter(pk=taken.pk).update(lease_token=2)  # another worker took it over
    mine = LeaseRenewer()
    held = [mine.hold(kept.pk, 1, 60), mine.hold(taken.pk, 1, 60)]
    with CaptureQueriesContext(connection) as queries:
        mine.renew(held)
    assert len(queries.captured_queries) == 1
    assert [h.lost for h in held] == [False, True]
    kept.refresh_from_db()
    taken.refresh_from_db()
    assert kept.lease_expires_at > soon + timedelta(seconds=30) and taken.lease_expires_at == soon
    for h in held:
        mine.release(h)


def test_holding_twice_is_counted_and_the_longer_lease_wins(db):
    mine = LeaseRenewer()
    first = mine.hold(7, 1, 60)
    again = mine.hold(7, 1, 300)
    assert again is first and first.lease_seconds == 300
    mine.release(first)
    assert mine.hold(7, 1, 60) is first  # still held once
    mine.release(first)
    mine.release(first)


def test_a_drain_leaves_no_renewer_thread_behind(db):
    seed(subscriptions=300)
    job = planned_job("tests.bump_range", {"partitions": 3})
    report = worker.drain(budget_seconds=5, job_id=job.pk, worker="w", standby=False)
    assert report.outcomes == {"succeeded": 3}
    assert not [t for t in threading.enumerate() if t.name == "lease-renewer"]
    assert renewer()._thread is None


class HoldersSeen(BumpRange):
    """Notes, at each batch, how many holders each lease this process renews has."""

    name = "tests.holders_seen"
    seen: list[list[int]] = []

    def process_batch(self, ctx, items):
        self.seen.append([held.holders for held in renewer()._held.values()])
        super().process_batch(ctx, items)


@pytest.fixture
def holders_seen(db):
    HoldersSeen.seen = []
    register(HoldersSeen)
    yield HoldersSeen
    unregister(HoldersSeen.name)


def test_each_lease_is_held_once_by_the_drain_that_claimed_it_and_by_a_run_outside_a_drain(holders_seen):
    seed(subscriptions=300)
    job = planned_job(holders_seen.name, {"partitions": 2})
    worker.drain(budget_seconds=5, job_id=job.pk, worker="w", standby=False, claim_batch=1)
    assert holders_seen.seen and all(holders == [1] for holders in holders_seen.seen), holders_seen.seen
    holders_seen.seen.clear()
    other = planned_job(holders_seen.name, {"partitions": 1})
    (claimed,) = claiming.partition_claim(worker_id="alone", lease_seconds=60, job_id=other.pk, limit=1)
    assert run_partition(claimed, worker_id="alone").kind == "succeeded"
    assert holders_seen.seen and all(holders == [1] for holders in holders_seen.seen), holders_seen.seen
    assert renewer()._held == {}
