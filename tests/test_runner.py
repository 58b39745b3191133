"""The runner in one process: outcomes, retries and backoff, skip policy, breaker, pause/cancel, sub-job retry."""

import threading
import time

import pytest

from opsapp.billing.models import Subscription
from partitions import worker
from partitions.engine import claiming
from partitions.models import JobEvent, SubJob
from partitions.operations import services
from partitions.worker.concurrency import ItemPool, ItemResult
from tests import jobtypes
from tests.factories import make_job, make_partition
from tests.support import planned_job, run_to_end, seed, timeline_by_ordering_key

pytestmark = pytest.mark.django_db


def test_a_range_job_processes_every_row_exactly_once_and_succeeds():
    seed(subscriptions=1234)
    job = run_to_end(planned_job("tests.bump_range", {"partitions": 5}))
    assert job.status == "succeeded", job.error
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    assert job.stats["items_done"] == 1234 and job.stats["partitions"] == {"succeeded": 5}
    types = list(JobEvent.objects.filter(job=job).values_list("type", flat=True).order_by("id"))
    assert types[:3] == ["job_created", "planning_started", "planning_finished"]
    assert types.count("partition_claimed") == 5 and types.count("partition_succeeded") == 5
    assert types[-2:] == ["finalizing_started", "job_succeeded"]


def test_a_crashing_batch_is_retried_with_backoff_until_max_attempts_then_fails_the_job():
    seed(subscriptions=20)
    job = run_to_end(planned_job("tests.controlled", {"action": "crash", "partitions": 2}))
    assert job.status == "failed" and "2 partitions" in job.error
    for partition in job.partitions.all():
        assert partition.status == "failed" and partition.attempts == 3
        assert "RuntimeError: batch exploded" in partition.last_error and "Traceback" in partition.last_traceback
    assert JobEvent.objects.filter(job=job, type="partition_retry_scheduled").count() == 4


def test_retry_raised_by_job_code_reschedules_the_partition_and_counts_an_attempt():
    seed(subscriptions=10)
    job = planned_job("tests.controlled", {"action": "retry", "partitions": 1})
    # No standby: it would wait out the rest of the budget for the backoff to end.
    worker.drain(budget_seconds=5, job_id=job.pk, worker="w", standby=False)
    partition = job.partitions.get()
    assert partition.status == "pending" and partition.attempts == 1
    # The stored schedule, not a timing: the partition becomes claimable RETRY_AFTER after its claim.
    assert partition.available_at >= partition.started_at + jobtypes.RETRY_AFTER
    scheduled = JobEvent.objects.get(job=job, type="partition_retry_scheduled").data
    assert scheduled["error"] == "broker busy" and scheduled["retry_after_s"] == jobtypes.RETRY_AFTER.total_seconds()


def test_cancel_job_raised_by_job_code_cancels_the_whole_job():
    seed(subscriptions=10)
    job = run_to_end(planned_job("tests.controlled", {"action": "cancel", "partitions": 2}))
    assert job.status == "cancelled" and job.error == "bad data found"
    assert set(job.partitions.values_list("status", flat=True)) == {"cancelled"}


def test_the_circuit_breaker_fails_the_job_when_too_many_partitions_fail(settings):
    settings.PARTITIONS_MIN_PARTITIONS_FOR_BREAKER = 2
    settings.PARTITIONS_FAILURE_RATIO = 0.3
    seed(subscriptions=60)
    job = run_to_end(planned_job("tests.controlled", {"action": "crash", "partitions": 6}))
    assert job.status == "failed" and job.error.startswith("circuit breaker")
    statuses = list(job.partitions.values_list("status", flat=True))
    assert statuses.count("failed") == 2 and "pending" not in statuses


def test_failed_items_are_recorded_as_subjobs_and_the_job_recovers_when_they_are_retried():
    job = run_to_end(planned_job("tests.items_serial", {"count": 30, "chunk_size": 10, "fail_every": 10}))
    failed = SubJob.objects.filter(job=job, status="failed")
    assert job.status == "failed" and failed.count() == 3
    assert "ValueError: item 1 failed" in failed.get(key="item-1").error
    assert services.subjobs_retry(job.pk, actor="ops") == 3
    job.refresh_from_db()
    assert job.status == "running"
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    assert SubJob.objects.filter(job=job, status="succeeded").count() == 30
    # The retried items moved to retry partitions: totals still add up to the 30 items.
    assert (job.stats["items_total"], job.stats["items_done"], job.stats["items_failed"]) == (30, 30, 0)


def test_skip_policy_tolerates_failures_up_to_the_threshold_then_fails_the_partition():
    job = run_to_end(planned_job("tests.items_strict", {"count": 40, "chunk_size": 20, "fail_every": 5}))
    # 4 failing items per partition of 20 > max_item_failures=2: both partitions fail, without retries.
    assert job.status == "failed"
    for partition in job.partitions.all():
        assert partition.status == "failed" and partition.attempts == 1
        assert "max_item_failures=2" in partition.last_error


def test_skipped_items_are_counted_apart_from_failures():
    job = run_to_end(planned_job("tests.items_serial", {"count": 20, "chunk_size": 20, "skip_every": 4}))
    assert job.status == "succeeded"
    partition = job.partitions.get()
    assert (partition.done_items, partition.skipped_items, partition.failed_items) == (15, 5, 0)
    assert SubJob.objects.filter(job=job, status="skipped").count() == 5


@pytest.mark.parametrize("action, partition_status, job_status", [
    ("pause", "pending", "paused"), ("cancel", "cancelled", "cancelled"),
])
def test_pause_and_cancel_take_effect_at_the_next_batch_boundary(action, partition_status, job_status):
    seed(subscriptions=35)
    job = planned_job("tests.steers_itself", {"action": action})
    worker.drain(budget_seconds=10, job_id=job.pk, worker="w")
    partition = job.partitions.get()
    job.refresh_from_db()
    assert job.status == job_status and partition.status == partition_status
    # The batch in flight finished and was checkpointed; nothing after it ran.
    assert partition.done_items == 10
    assert Subscription.objects.filter(product_version=2).count() == 10
    if action == "pause":
        assert partition.attempts == 0, "a release gives the attempt back"
        services.job_resume(job.pk, actor="ops")
        job = run_to_end(job)
        assert job.status == "succeeded"
        assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}


def test_expired_leases_are_reaped_back_to_pending_or_failed_when_out_of_attempts():
    from datetime import timedelta

    from django.utils import timezone

    job = make_job()
    past, future = timezone.now() - timedelta(seconds=1), timezone.now() + timedelta(seconds=30)
    expired = make_partition(job, seq=0, status="running", lease_expires_at=past, attempts=1, checkpoint=[5])
    exhausted = make_partition(job, seq=1, status="running", lease_expires_at=past, attempts=5, max_attempts=5)
    alive = make_partition(job, seq=2, status="running", lease_expires_at=future, attempts=1)
    assert claiming.partitions_reap_expired() == {"requeued": 1, "failed": 1}
    for p in (expired, exhausted, alive):
        p.refresh_from_db()
    assert (expired.status, expired.checkpoint, expired.lease_expires_at) == ("pending", [5], None)
    assert exhausted.status == "failed" and "lease expired" in exhausted.last_error
    assert alive.status == "running" and alive.lease_expires_at == future


def test_max_parallel_caps_the_partitions_one_claim_can_take():
    job = make_job(max_parallel=2)
    for seq in range(5):
        make_partition(job, seq=seq)
    claimed = claiming.partition_claim(worker_id="w", lease_seconds=30, job_id=job.pk, limit=10)
    assert len(claimed) == 2
    assert claiming.partition_claim(worker_id="w2", lease_seconds=30, job_id=job.pk, limit=10) == []
    claiming.partitions_complete([(claimed[0].pk, claimed[0].lease_token, {})], actor="w")
    assert len(claiming.partition_claim(worker_id="w2", lease_seconds=30, job_id=job.pk, limit=10)) == 1


def test_higher_priority_jobs_are_claimed_first():
    low, high = make_job(priority=0), make_job(priority=5)
    make_partition(low)
    make_partition(high)
    (claimed,) = claiming.partition_claim(worker_id="w", lease_seconds=30)
    assert claimed.job_id == high.pk


def test_item_pool_checkpoint_prefix_never_passes_an_unfinished_item():
    finished: set[int] = set()
    lock = threading.Lock()
    prefixes: list[int] = []

    def work(i: int) -> ItemResult:
        time.sleep(0.002 * ((i * 7) % 5))
        with lock:
            finished.add(i)
        return ItemResult(i, value=i)

    def on_prefix(done: int, results: list) -> None:
        with lock:
            assert set(range(done)) <= finished
        assert all(r is not None for r in results[:done])
        prefixes.append(done)

    with ItemPool(4) as pool:
        results = pool.run(list(range(60)), work, key_of=lambda i: "", on_prefix=on_prefix)
    assert [r.value for r in results] == list(range(60))
    assert prefixes == sorted(prefixes) and prefixes[-1] == 60
    assert len(prefixes) > 1, "items finished out of order, so the prefix advanced in steps"


def test_items_of_one_ordering_key_never_overlap_and_finish_in_order_while_keys_run_in_parallel(recorder):
    job = run_to_end(planned_job("tests.items_concurrent", {"count": 48, "chunk_size": 48, "keys": 3,
                                                             "sleep_ms": 15}))
    assert job.status == "succeeded"
    by_key = timeline_by_ordering_key(recorder.timeline)
    assert len(by_key) == 3
    spans = [(start, end) for runs in by_key.values() for _, start, end in runs]
    overlapping = sum(1 for a in spans for b in spans if a < b and a[0] < b[1] and b[0] < a[1])
    assert overlapping > 0, "different keys ran in parallel"


def test_items_without_ordering_keys_run_concurrently_and_checkpoint_mid_batch(monkeypatch, recorder):
    from partitions.worker import run as runner

    monkeypatch.setattr(runner, "CHECKPOINT_EVERY_SECONDS", 0.0)
    checkpoints = []
    real = claiming.partition_checkpoint

    def spy(partition_id, token, **kwargs):
        done_now = {sj for sj, _, _, _ in recorder.timeline}
        checkpoints.append((kwargs["checkpoint"], done_now))
        return real(partition_id, token, **kwargs)

    monkeypatch.setattr(claiming, "partition_checkpoint", spy)
    job = run_to_end(planned_job("tests.items_concurrent", {"count": 40, "chunk_size": 40, "sleep_ms": 10}))
    assert job.status == "succeeded"
    assert len(checkpoints) > 1
    seqs = dict(SubJob.objects.filter(job=job).values_list("seq", "key"))
    for checkpoint, done_now in checkpoints:
        assert {seqs[s] for s in seqs if s <= checkpoint} <= done_now



@pytest.mark.django_db(transaction=True)
def test_a_batch_longer_than_the_lease_keeps_its_lease_by_renewal(settings):
    settings.PARTITIONS_LEASE_SECONDS = 0.6
    seed(subscriptions=100)
    job = run_to_end(planned_job("tests.bump_range", {"partitions": 1, "sleep_ms": 1000}))
    assert job.status == "succeeded", job.error
    partition = job.partitions.get()
    assert partition.attempts == 1 and partition.lease_token == 1, "never lost, never reclaimed"
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}


def test_failed_rows_of_a_range_job_are_kept_as_subjobs_and_retrying_them_processes_just_those_rows(recorder):
    seed(subscriptions=200)
    job = run_to_end(planned_job("tests.flaky_rows", {"partitions": 2}))
    failed = SubJob.objects.filter(job=job, status="failed")
    assert job.status == "failed" and failed.count() == 8
    assert set(failed.values_list("payload__pk", flat=True)) == {pk for pk in Subscription.objects.values_list(
        "pk", flat=True) if pk % 25 == 0}
    # The failed rows' own updates were rolled back; every other row was bumped once.
    assert Subscription.objects.filter(product_version=1).count() == 8
    assert services.subjobs_retry(job.pk, actor="ops") == 8
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    assert job.partitions.filter(kind="retry").count() == 2


def test_a_drain_builds_a_jobs_queryset_once_per_scope_not_once_per_partition(recorder):
    seed(subscriptions=200)
    job = planned_job("tests.counts_splits", {"partitions": 4})
    built_by_planning = recorder.splits_built
    report = worker.drain(budget_seconds=10, job_id=job.pk, worker="w", standby=False)
    assert report.outcomes == {"succeeded": 4}
    assert recorder.splits_built == built_by_planning + 1
