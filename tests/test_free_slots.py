"""One "free slot under max_parallel" rule (the registry's `free_slots(j)`): the claim, an idle worker's split
and a worker's hand-back at a lowered cap all read it, so they agree on the same rows."""

from __future__ import annotations

import pytest

from partitions.engine import claiming
from partitions.engine.sql import queries
from partitions.models import Partition
from partitions.worker import pulse
from tests.factories import make_job, make_partition

LIVE, PENDING = 3, 4


@pytest.mark.django_db
@pytest.mark.parametrize("max_parallel", [0, 1, 2, 3, 4, 5, 9])
def test_the_claim_the_split_and_the_hand_back_agree_on_free_slots(no_dispatcher, max_parallel):
    job = make_job(status="running", max_parallel=max_parallel)
    Partition.objects.filter(job=job).delete()
    live = [make_partition(job, seq=i, status="running") for i in range(LIVE)]
    for i in range(PENDING):
        make_partition(job, seq=10 + i, status="pending")
    other = make_job(status="running", max_parallel=1)  # another job's leases never take this one's slots
    make_partition(other, seq=0, status="running")

    free = None if max_parallel == 0 else max_parallel - LIVE
    startable = PENDING if free is None else min(PENDING, max(0, free))
    assert claiming.job_free_slots(job.pk) == free
    assert (job.pk in claiming.jobs_with_free_slot([job.pk, other.pk])) is (free is None or free > 0)
    assert other.pk not in claiming.jobs_with_free_slot([job.pk, other.pk])
    over = max(0, -(free or 0))
    assert pulse.partitions_over_cap(job.pk) == {p.pk for p in live[LIVE - over:]}
    assert claiming.claimable_slots() == startable

    claimed = claiming.partition_claim(worker_id="w", lease_seconds=60, job_id=job.pk, limit=10)
    assert len(claimed) == startable, "the claim takes exactly the free slots the others count"
    assert Partition.objects.filter(job=job, status="pending").count() == PENDING - startable
    if free is not None:
        left = free - startable if free > 0 else free
        assert claiming.job_free_slots(job.pk) == left
        assert (job.pk in claiming.jobs_with_free_slot([job.pk])) is (left > 0)
    assert claiming.claimable_slots() == (PENDING - startable if free is None else 0)


@pytest.mark.django_db
def test_a_missing_job_has_no_slot_and_nothing_over_its_cap():
    assert claiming.job_free_slots(-1) == 0
    assert claiming.jobs_with_free_slot([-1]) == set()
    assert pulse.partitions_over_cap(-1) == frozenset()


def test_every_slot_reader_uses_the_one_free_slots_rule():
    rule = queries["job_free_slots"].split("SELECT ", 1)[1].split(" FROM partitions_job j WHERE", 1)[0]
    assert rule.startswith("(CASE WHEN j.max_parallel > 0 THEN j.max_parallel - (SELECT count(*)")
    for name in ("job_free_slots", "jobs_with_free_slot", "job_partitions_over_cap", "claimable_slots"):
        assert rule in queries[name], name
