"""No long tail: splitting a running partition's remaining work, safely (real PostgreSQL; real qclusters
where the fleet matters). Exactly-once is trigger-counted as in the other exactly-once tests: every
subscription's product_version goes from 1 to 2 exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db.models import Sum

from opsapp.billing.models import Subscription
from partitions.engine import claiming
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.worker import splitting
from partitions.worker.context import job_setup
from tests.support import finished, planned_job, run_to_end, seed, started_job, timeline_by_ordering_key, wait_for
from tests.test_concurrency import assert_every_subscription_bumped_exactly_once

pytestmark = pytest.mark.django_db(transaction=True)


def claimed(job: Job) -> Partition:
    (partition,) = claiming.partition_claim(worker_id="holder", lease_seconds=60, job_id=job.pk)
    return partition


def split_now(partition: Partition) -> Partition | None:
    setup = job_setup(partition.job_id)
    plan = splitting.plan(Partition.objects.get(pk=partition.pk), setup)
    return None if plan is None else splitting.apply(plan, setup, actor="test", why="test")


def total_estimate(job: Job) -> int:
    return Partition.objects.filter(job=job).aggregate(n=Sum("estimated_items"))["n"]


# Each kind -----------------------------------------------------------------------------------------------------

def test_a_range_split_cuts_the_remainder_near_its_middle_and_keeps_the_job_total(settings):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(1000)
    job = planned_job("tests.bump_range", {"partitions": 1})
    total = total_estimate(job)
    holder = claimed(job)
    claiming.partition_checkpoint(holder.pk, holder.lease_token, checkpoint=keys_in_order()[199], done=200,
                                  lease_seconds=60)
    new = split_now(holder)

    old = Partition.objects.get(pk=holder.pk)
    assert (new.lower, new.upper, new.split_from_id, new.status) == (old.upper, None, old.pk, "pending")
    assert old.upper == keys_in_order()[600]  # 800 left after the checkpoint: cut after 400 of them
    assert old.bounds_version == 1 and total_estimate(job) == total
    assert (old.estimated_items - old.done_items, new.estimated_items) == (400, 400)
    split = JobEvent.objects.get(job=job, type="partition_split")
    assert (split.data["from"], split.data["to"], split.partition_id) == (old.seq, new.seq, old.pk)
    assert split.data["before"] != split.data["kept"] and split.data["new"] == new.bounds_display


def test_the_job_page_and_the_cli_show_splits(settings, superuser, admin_env):
    from django.test import Client
    from django.urls import reverse

    from tests.support import cli

    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(400)
    job = planned_job("tests.bump_range", {"partitions": 1})
    holder = claimed(job)
    new = split_now(holder)
    client = Client()
    client.force_login(superuser)
    page = client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert f"split from #{holder.pk}" in page
    assert '<dd id="pj-splits">1</dd>' in page
    code, out, _ = cli("partitions", str(job.pk), "--json")
    rows = {r["id"]: r for r in __import__("json").loads(out)}
    assert code == 0 and rows[new.pk]["split_from"] == holder.pk and rows[holder.pk]["split_from"] is None


def keys_in_order() -> list[list]:
    from partitions.core.encoding import to_json

    return [to_json([created, pk]) for created, pk in Subscription.objects.order_by("created_at", "id")
            .values_list("created_at", "id")]


def test_a_modulo_split_doubles_the_modulus_and_both_halves_continue_from_the_checkpoint(settings):
    from django.db.models import F

    from opsapp.billing.models import Event

    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(0, events=2000)
    job = planned_job("tests.mark_modulo", {"buckets": 2})
    holder = claimed(job)
    # The holder did its bucket's events up to the 100th id, and checkpointed there.
    upto = Event.objects.order_by("id").values_list("id", flat=True)[100]
    mine = Event.objects.filter(id__lte=upto).extra(where=["id %% 2 = %s"], params=[holder.remainder])
    done = mine.update(send_count=F("send_count") + 1)
    claiming.partition_checkpoint(holder.pk, holder.lease_token, checkpoint=upto, done=done, lease_seconds=60)
    new = split_now(holder)

    old = Partition.objects.get(pk=holder.pk)
    assert (old.modulus, old.remainder, new.modulus, new.remainder) == (4, holder.remainder, 4, holder.remainder + 2)
    assert new.checkpoint == upto == old.checkpoint
    assert total_estimate(job) == 2000
    claiming.partition_release(holder.pk, holder.lease_token, actor="test", reason="test")
    assert run_to_end(job).status == "succeeded"
    assert set(Event.objects.values_list("send_count", flat=True)) == {1}  # every event once, none twice


def test_an_items_split_moves_whole_ordering_key_groups_and_keeps_their_order(settings, recorder):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    job = planned_job("tests.items_serial", {"count": 900, "chunk_size": 900, "keys": 45, "key_runs": True})
    holder = claimed(job)
    new = split_now(holder)
    moved = set(SubJob.objects.filter(partition=new).values_list("ordering_key", flat=True))
    kept = set(SubJob.objects.filter(partition_id=holder.pk).values_list("ordering_key", flat=True))
    assert moved and not moved & kept  # a key's items stay together
    first_moved = SubJob.objects.filter(partition=new).order_by("seq").first().seq
    assert first_moved >= 2 * 100 + 1  # past what the holder may have in flight (two batches and its slots)
    assert total_estimate(job) == 900
    claiming.partition_release(holder.pk, holder.lease_token, actor="test", reason="test")
    job = run_to_end(job)
    assert job.status == "succeeded"
    assert Counter(key for key, *_ in recorder.timeline) == {f"item-{i}": 1 for i in range(900)}
    timeline_by_ordering_key(recorder.timeline)  # in order within each key


def test_a_partition_with_less_than_four_batches_left_is_not_split():
    seed(150)
    job = planned_job("tests.bump_range", {"partitions": 1})  # batch_size 50: 150 rows are three batches
    assert split_now(claimed(job)) is None
    assert Partition.objects.filter(job=job).count() == 1


# Racing the holder -----------------------------------------------------------------------------------------------

def test_a_split_committed_while_the_holder_s_batch_read_past_it_rolls_that_batch_back_and_it_runs_again_within(
        settings, recorder):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(200)
    recorder.mid_batch.update(plan_at=1, apply_at=1)
    job = run_to_end(planned_job("tests.splits_mid_batch", {}))

    assert job.status == "succeeded"
    assert recorder.mid_batch["new"] is not None
    assert recorder.mid_batch["batches"][:2] == [150, 100]  # read past the cut, refused, again within it
    assert_every_subscription_bumped_exactly_once(200)
    assert Partition.objects.filter(job=job).count() == 2 and total_estimate(job) == 200


def test_a_split_committed_while_the_holder_s_batch_stays_inside_the_new_bounds_costs_that_batch_nothing(
        settings, recorder):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(400)  # the cut lands after 200 rows, past the first batch of 150
    recorder.mid_batch.update(plan_at=1, apply_at=1)
    job = run_to_end(planned_job("tests.splits_mid_batch", {}))

    assert job.status == "succeeded" and recorder.mid_batch["new"] is not None
    assert recorder.mid_batch["batches"][:2] == [150, 50]  # committed as read, then up to the new bound
    assert_every_subscription_bumped_exactly_once(400)
    assert Partition.objects.filter(job=job).count() == 2 and total_estimate(job) == 400


def test_a_split_planned_before_the_holder_checkpointed_past_its_cut_is_refused(settings, recorder):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(200)
    recorder.mid_batch.update(plan_at=1, apply_at=2)
    job = run_to_end(planned_job("tests.splits_mid_batch", {}))

    assert job.status == "succeeded" and recorder.mid_batch["applied"]
    assert recorder.mid_batch["new"] is None  # the checkpoint had passed the cut
    assert Partition.objects.filter(job=job).count() == 1
    assert not JobEvent.objects.filter(job=job, type="partition_split").exists()
    assert_every_subscription_bumped_exactly_once(200)


# Split on failure --------------------------------------------------------------------------------------------------

def test_a_partition_that_times_out_is_halved_until_it_fits_and_the_job_succeeds():
    seed(800)
    job = run_to_end(planned_job("tests.too_big_partition", {"partitions": 1, "max_rows": 250}))
    assert job.status == "succeeded", job.error
    assert_every_subscription_bumped_exactly_once(800)
    splits = JobEvent.objects.filter(job=job, type="partition_split")
    assert splits.count() >= 2 and all("timed out" in e.data["why"] for e in splits)
    assert total_estimate(job) == 800


# Real workers --------------------------------------------------------------------------------------------------------

SKEW = {"partitions": 4, "slow_ms": 400, "fast_ms": 2}  # the slow quarter: 8 s of work, split for long


@pytest.mark.slow
def test_idle_workers_split_the_slow_partition_and_every_worker_holds_a_lease_again(clusters):
    seed(1600)
    slow_below = Subscription.objects.order_by("id").values_list("id", flat=True)[400]
    fleet = clusters(2)  # 4 worker processes
    job = started_job("tests.skewed", {**SKEW, "slow_below": slow_below})
    wait_for(lambda: JobEvent.objects.filter(job=job, type="partition_split").exists(), timeout=60,
             what="a split", clusters=fleet)
    most = 0
    while Job.objects.get(pk=job.pk).status == "running" and most < 4:
        most = max(most, Partition.objects.filter(job=job).filter(claiming.live_lease_q()).count())
        time.sleep(0.05)
    assert most == 4
    job = finished(job, fleet)
    assert job.status == "succeeded"
    assert_every_subscription_bumped_exactly_once(1600)
    assert total_estimate(job) == 1600


@pytest.mark.slow
def test_a_holder_killed_right_after_a_split_loses_and_repeats_nothing(clusters):
    seed(1600)
    slow_below = Subscription.objects.order_by("id").values_list("id", flat=True)[400]
    victim, survivor = clusters(2)
    job = started_job("tests.skewed", {**SKEW, "slow_below": slow_below})
    wait_for(lambda: JobEvent.objects.filter(job=job, type="partition_split").exists(), timeout=60,
             what="a split", clusters=[victim, survivor])
    source_id = JobEvent.objects.filter(job=job, type="partition_split").first().partition_id

    def holder_of_the_split_partition():
        source = Partition.objects.get(pk=source_id)
        pid = int(source.lease_owner.split(":")[1]) if source.status == "running" else None
        return next((c for c in (victim, survivor) if pid in c.pids()), None)

    wait_for(lambda: holder_of_the_split_partition() is not None, timeout=30, what="the split partition's holder",
             clusters=[victim, survivor])
    holder = holder_of_the_split_partition()
    other = survivor if holder is victim else victim
    holder.kill()
    job = finished(job, [other], timeout=180)
    assert job.status == "succeeded", job.error
    assert_every_subscription_bumped_exactly_once(1600)


def test_interleaved_ordering_keys_are_never_torn_apart_so_such_a_partition_is_not_split(settings):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    job = planned_job("tests.items_serial", {"count": 600, "chunk_size": 600, "keys": 7})
    holder = claimed(job)
    assert split_now(holder) is None  # every key has an item before any cut
    assert SubJob.objects.filter(job=job).exclude(partition_id=holder.pk).count() == 0


def test_tick_halves_a_partition_whose_lease_lapsed_on_a_second_attempt():
    from datetime import timedelta

    from django.utils import timezone

    from partitions.worker import maintenance

    seed(1000)
    job = planned_job("tests.bump_range", {"partitions": 1})
    holder = claimed(job)
    Partition.objects.filter(pk=holder.pk).update(attempts=2, lease_expires_at=timezone.now() - timedelta(seconds=1))
    reaped = maintenance.reap_expired_leases()
    assert reaped["requeued"] == 1 and reaped["halved"] == 1
    split = JobEvent.objects.get(job=job, type="partition_split")
    assert split.data["why"] == "its lease lapsed again" and total_estimate(job) == 1000
    assert set(Partition.objects.filter(job=job).values_list("status", flat=True)) == {"pending"}
    assert run_to_end(job).status == "succeeded"
    assert_every_subscription_bumped_exactly_once(1000)
