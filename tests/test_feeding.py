"""Concurrent items across batch edges: the slots stay busy, keys keep their order, checkpoints lag behind
items in flight, stops wind down at a checkpoint, and on_checkpoint's writes commit with the checkpoint."""

import threading

import pytest
from django.db import connections, transaction
from django.db.models import Sum
from django.db.models.functions import Now

from opsapp.billing.models import Event
from partitions import worker
from partitions.engine import claiming
from partitions.models import Partition, SubJob
from partitions.operations import services
from partitions.worker.commit import apply_outcome
from partitions.worker.run import run_partition
from tests import jobtypes
from tests.support import (
    kill_mid_partition_and_finish,
    planned_job,
    run_to_end,
    seed,
    timeline_by_ordering_key,
    wait_for,
)

pytestmark = pytest.mark.django_db

C = jobtypes.FedItems.item_concurrency
BATCH = jobtypes.FedItems.batch_size


def spans(recorder) -> dict[int, tuple[float, float]]:
    """Item index -> (start, end) of every item that ran, from the job type's own clock."""
    return {int(key.split("-")[1]): (start, end) for key, _, start, end in recorder.timeline}


def test_the_next_batches_run_while_a_slow_item_ends_the_current_one_and_in_flight_never_exceeds_c(recorder):
    job = run_to_end(planned_job("tests.items_fed", {"count": 60, "chunk_size": 60, "sleep_ms": 5,
                                                     "slow_item": BATCH - 1}))
    assert job.status == "succeeded", job.error
    ran = spans(recorder)
    assert sorted(ran) == list(range(60)), "every item ran once"
    last_of_batch_1 = max(end for i, (_, end) in ran.items() if i < BATCH)
    first_of_batch_2 = min(start for i, (start, _) in ran.items() if BATCH <= i < 2 * BATCH)
    assert first_of_batch_2 < last_of_batch_1
    started_meanwhile = {i for i, (start, _) in ran.items() if start < last_of_batch_1}
    assert max(started_meanwhile) >= 2 * BATCH, "batch 3 started while batch 1's slow item ran"
    assert max(started_meanwhile) < 3 * BATCH, "but nothing more than a batch (and the slots) past it"
    assert recorder.in_flight["max"] == C
    assert SubJob.objects.filter(job=job, status="succeeded").count() == 60


def test_items_of_one_ordering_key_stay_in_order_and_never_overlap_across_batch_edges(recorder):
    job = run_to_end(planned_job("tests.items_fed", {"count": 90, "chunk_size": 90, "keys": 3, "sleep_ms": 6}))
    assert job.status == "succeeded", job.error
    by_key = timeline_by_ordering_key(recorder.timeline)
    assert len(by_key) == 3
    ran = spans(recorder)
    crossed = [edge for edge in range(BATCH, 90, BATCH)
               if min(ran[i][0] for i in range(edge, edge + BATCH)) < max(ran[i][1] for i in range(edge))]
    assert crossed, "keys of the next batch ran while the current one finished"
    assert recorder.in_flight["max"] <= 3, "three keys, so never more than three in flight"


def test_no_checkpoint_passes_an_item_still_in_flight(monkeypatch, recorder):
    from partitions.worker import run as runner

    monkeypatch.setattr(runner, "CHECKPOINT_EVERY_SECONDS", 0.0)
    checkpoints: list[tuple[int, set[int], int]] = []
    real = claiming.partition_checkpoint

    def spy(partition_id, token, **kwargs):
        with recorder.lock:
            checkpoints.append((kwargs["checkpoint"], set(spans(recorder)), recorder.in_flight["now"]))
        return real(partition_id, token, **kwargs)

    monkeypatch.setattr(claiming, "partition_checkpoint", spy)
    job = run_to_end(planned_job("tests.items_fed", {"count": 80, "chunk_size": 80, "sleep_ms": 4,
                                                     "slow_item": 25}))
    assert job.status == "succeeded", job.error
    marks = [checkpoint for checkpoint, _, _ in checkpoints]
    assert marks == sorted(marks) and marks[-1] == 79 and len(marks) > 80 // BATCH
    for checkpoint, finished_then, _ in checkpoints:
        assert set(range(checkpoint + 1)) <= finished_then  # seq == item index here
    assert any(in_flight for _, _, in_flight in checkpoints), "checkpoints were taken with items in flight"
    assert job.partitions.get().done_items == 80


def test_on_checkpoint_gets_each_succeeded_item_once_with_its_value_inside_the_checkpoint_transaction(recorder):
    job = run_to_end(planned_job("tests.items_fed", {"count": 50, "chunk_size": 50, "sleep_ms": 2,
                                                     "skip_every": 7, "fail_every": 5}))
    succeeded = set(SubJob.objects.filter(job=job, status="succeeded").values_list("key", flat=True))
    assert SubJob.objects.filter(job=job, status__in=["skipped", "failed"]).count() == 50 - len(succeeded) > 0
    assert sorted(key for key, _, _ in recorder.checkpointed) == sorted(succeeded)
    assert all(value == {"i": int(key.split("-")[1])} for key, value, _ in recorder.checkpointed)
    assert all(inside for _, _, inside in recorder.checkpointed)


def test_cancel_job_from_an_item_stops_feeding_at_once_and_commits_only_the_items_before_it(recorder):
    job = run_to_end(planned_job("tests.items_fed", {"count": 200, "chunk_size": 200, "sleep_ms": 3,
                                                     "cancel_at": 50}))
    assert job.status == "cancelled"
    partition = job.partitions.get()
    assert partition.status == "cancelled"
    assert (partition.checkpoint, partition.done_items) == (49, 50)
    assert max(spans(recorder)) < 50 + 2 * BATCH + C, "nothing started past the cancelling item's look-ahead"


def test_the_skip_policy_fails_a_partition_of_concurrent_items_at_a_checkpoint():
    job = run_to_end(planned_job("tests.items_fed_strict", {"count": 200, "chunk_size": 200, "fail_every": 3}))
    partition = job.partitions.get()
    assert partition.status == "failed" and partition.attempts == 1, "final: not retried"
    assert jobtypes.StrictFedItems.max_item_failures < partition.failed_items
    assert partition.checkpoint < 199, "stopped before the end"


@pytest.mark.django_db(transaction=True)
def test_a_pause_winds_down_at_the_next_checkpoint_commits_every_item_that_ran_and_resume_repeats_none(recorder):
    job = planned_job("tests.items_fed", {"count": 300, "chunk_size": 300, "sleep_ms": 3, "keys": 5,
                                          "pause_at": 30})
    worker.drain(budget_seconds=30, job_id=job.pk, worker="test-worker")
    partition = job.partitions.get()
    job.refresh_from_db()
    assert (partition.status, job.status) == ("pending", "paused")
    ran = spans(recorder)
    assert 30 < partition.done_items < 300
    assert partition.done_items == len(ran) and set(ran) == set(range(partition.done_items)), \
        "items held back by their key behind the last started one still ran, so the checkpoint covers all"
    services.job_resume(job.pk, actor="ops")
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    assert len(recorder.timeline) == 300 and sorted(spans(recorder)) == list(range(300)), "each item ran once"


# billing.dispatch_events: acks marked in bulk with the checkpoint -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_lease_taken_over_mid_run_rolls_back_the_marks_of_the_uncommitted_events_and_the_new_holder_sends_the_rest():
    seed(subscriptions=0, events=1200)
    job = planned_job("billing.dispatch_events", {"buckets": 1, "confirm_ms": 10, "concurrency": 8})
    [part] = claiming.partition_claim(worker_id="old-worker", lease_seconds=30, job_id=job.pk)
    taken: list[Partition] = []

    def take_over_after_the_first_checkpoint() -> None:
        try:
            wait_for(lambda: Partition.objects.filter(pk=part.pk, done_items__gt=0).exists(), timeout=30,
                     what="a first checkpoint")
            with transaction.atomic():  # what a claim after the lease's expiry does, without waiting for it
                Partition.objects.filter(pk=part.pk).update(lease_expires_at=Now())
                taken.extend(claiming.partition_claim(worker_id="new-worker", lease_seconds=30, job_id=job.pk))
        finally:
            connections.close_all()

    thief = threading.Thread(target=take_over_after_the_first_checkpoint)
    thief.start()
    outcome = run_partition(part, worker_id="old-worker")
    thief.join(30)
    assert outcome.kind == "lease_lost"
    [new] = taken
    assert new.lease_token == part.lease_token + 1 and 0 < new.done_items < 1200
    sent = set(Event.objects.filter(status="sent").values_list("pk", flat=True))
    assert sent == set(Event.objects.filter(pk__lte=new.checkpoint).values_list("pk", flat=True)), \
        "marked exactly up to the checkpoint: the old holder's later marks rolled back with its refused checkpoint"

    outcome = run_partition(new, worker_id="new-worker")
    assert outcome.kind == "succeeded" and outcome.stats["done"] == 1200 - new.done_items
    apply_outcome(new, outcome, worker_id="new-worker")
    assert Event.objects.filter(status="sent", send_count=1).exclude(ack_id="").count() == 1200
    assert Partition.objects.get(pk=part.pk).done_items == 1200


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_dispatch_events_under_a_cluster_killed_mid_partition_marks_every_event_sent_exactly_once(clusters):
    seed(subscriptions=0, events=4000)
    victim, survivor = clusters(2)
    job, _ = services.job_start("billing.dispatch_events", {"buckets": 4, "confirm_ms": 20, "concurrency": 8},
                                actor="test")
    job = kill_mid_partition_and_finish(job, victim, survivor)
    assert Event.objects.filter(status="sent", send_count=1).exclude(ack_id="").count() == 4000
    assert job.partitions.aggregate(n=Sum("done_items"))["n"] == 4000, "each event counted once"
