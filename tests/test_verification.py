"""The completion proof (partitions.reads.verification): a job counts as succeeded only when its committed partitions
cover the planned key space exactly (splits and retries included), every planned sub-job is handled and its job
type's invariant holds; `jobs verify` runs the same proof on demand; an operator's skip of a failed job's last
failures finalizes it again. Real PostgreSQL, the engine driven directly (no qcluster)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from opsapp.billing.models import Subscription
from partitions import worker
from partitions.core.encoding import to_json
from partitions.engine import claiming
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.operations import services
from partitions.reads import verification
from partitions.reads.attempts import Mark, attempts_of
from partitions.reads.statistics import job_run_statistics
from partitions.reads.verification import (
    JOB_CODE,
    modulo_problems,
    partition_the_integers,
    planned_key_space,
    range_problems,
)
from partitions.worker import maintenance, steps
from tests.factories import path
from tests.support import cli, planned_job, run_to_end, seed
from tests.test_fuzz import FUZZ
from tests.test_splitting import claimed, split_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]


def drained(job: Job) -> Job:
    """Every partition of the job run to its end in this process, without the finalize step."""
    for _ in range(100):
        worker.drain(budget_seconds=30, job_id=job.pk, worker="test-worker")
        if not Partition.objects.filter(job=job, status__in=["pending", "running"]).exists():
            return job
    raise AssertionError("the job's partitions did not finish")


def finalized(job: Job) -> Job:
    steps.job_finalize(job.pk, worker_id="test-worker")
    job.refresh_from_db()
    return job


# The coverage rules, pure ---------------------------------------------------------------------------------------

def test_ranges_that_tile_the_key_space_verify_and_a_gap_or_an_overlap_is_named_with_its_bounds():
    whole = [[None, None]]
    tiles = [("partition 0", None, [5]), ("partition 1", [5], [9]), ("partition 2", [9], None)]
    assert range_problems(whole, tiles) == []
    assert range_problems(whole, [tiles[0], tiles[2]], what="id") == [
        "gap: no committed partition covers [(5), (9)) of id"]
    assert range_problems(whole, [tiles[0], ("partition 1", [5], [10]), tiles[2]], what="id") == [
        "overlap: partition 2 [(9), (+inf)) and partition 1 (up to [(5), (10))) share keys of id"]
    assert range_problems([[None, [9]]], tiles) == ["[(9), (+inf)) of the key is committed but outside the planned "
                                                    "key space"]
    assert range_problems(whole, [*tiles, ("partition 3", [7], [3])])[0].startswith("partition 3 has an empty range")


def test_modulo_classes_must_partition_the_integers_and_a_gap_names_the_classes_missing():
    assert partition_the_integers([[2, 0], [4, 1], [4, 3]])
    assert not partition_the_integers([[2, 0], [4, 1]]) and not partition_the_integers([[2, 0], [4, 0], [2, 1]])
    split = [(2, 0, "partition 0"), (4, 1, "partition 1"), (4, 3, "partition 2")]
    assert modulo_problems([[1, 0]], split) == []
    assert modulo_problems([[1, 0]], split[:2], what="id") == ["gap: no committed partition covers id % 4 = 3"]
    assert modulo_problems([[1, 0]], [*split, (8, 5, "partition 3")], what="id") == [
        "overlap: partition 1 (id % 4 = 1) and partition 3 (id % 8 = 5) share keys"]


@st.composite
def split_classes(draw) -> tuple[list[tuple[int, int, str]], int]:
    """Modulo buckets split N -> 2N at random, as idle workers split them; and one class to drop."""
    buckets = draw(st.integers(1, 6))
    classes = [(buckets, r) for r in range(buckets)]
    for _ in range(draw(st.integers(0, 12))):
        m, r = classes.pop(draw(st.integers(0, len(classes) - 1)))
        classes += [(2 * m, r), (2 * m, r + m)]
    return [(m, r, f"partition {i}") for i, (m, r) in enumerate(classes)], draw(st.integers(0, len(classes) - 1))


@FUZZ
@given(case=split_classes())
def test_any_sequence_of_modulo_splits_still_verifies_and_dropping_any_class_is_a_gap(case):
    classes, dropped = case
    assert modulo_problems([[1, 0]], classes) == []
    problems = modulo_problems([[1, 0]], classes[:dropped] + classes[dropped + 1:])
    assert len(problems) == 1 and problems[0].startswith("gap: ")


def test_the_plan_records_its_key_space_merged():
    from partitions.jobtypes.splits import ItemSpec, PartitionPlan

    plans = [PartitionPlan("range", 5, lower=None, upper=[3], key=["id"]),
             PartitionPlan("range", 5, lower=[3], upper=None, key=["id"]),
             *(PartitionPlan("modulo", 1, modulus=4, remainder=r, key=["id"], scope={"s": 1}) for r in range(4)),
             PartitionPlan("items", 2, items=[ItemSpec("a"), ItemSpec("b")])]
    assert planned_key_space(plans) == {"groups": [
        {"kind": "range", "key": ["id"], "scope": {}, "bounds": [[None, None]]},
        {"kind": "modulo", "key": ["id"], "scope": {"s": 1}, "bounds": [[1, 0]]}], "sub_jobs": 2}


# Jobs the engine runs --------------------------------------------------------------------------------------------

def test_a_range_job_verifies_and_succeeds_and_its_plan_is_recorded():
    seed(400)
    job = planned_job("tests.bump_range", {"partitions": 4})
    assert job.key_space["groups"] == [{"kind": "range", "key": ["created_at", "id"], "scope": {},
                                        "bounds": [[None, None]]}]
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    assert job.stats["verification"] == {"complete": True, "skipped": 0, "skipped_by": [], "notes": []}
    code, out, _ = cli("verify", str(job.pk), "--json")
    assert code == 0 and json.loads(out)["complete"] is True
    code, out, _ = cli("verify", str(job.pk))
    assert code == 0 and out.startswith(f"job {job.pk} (succeeded) is complete: its 4 partitions cover")


@pytest.mark.parametrize("plant", ["deleted", "shrunk"])
def test_a_planted_gap_fails_the_job_with_the_gap_named_and_jobs_verify_exits_1(plant):
    seed(400)
    job = planned_job("tests.bump_range", {"partitions": 4})
    victim = Partition.objects.get(job=job, seq=2)
    if plant == "deleted":
        victim.delete()
    else:  # its range cut short after planning: the keys from the new upper bound on belong to no partition
        middle = Subscription.objects.order_by("created_at", "id").values_list("created_at", "id")[250]
        Partition.objects.filter(pk=victim.pk).update(upper=to_json(list(middle)))
    job = run_to_end(job)
    assert job.status == "failed"
    assert job.error.startswith("verification failed: gap: no committed partition covers [(")
    assert JobEvent.objects.get(job=job, type="job_failed").data["verification"][0].startswith("gap: ")
    code, out, err = cli("verify", str(job.pk))
    assert code == 1
    assert "is not complete:\n  - gap: no committed partition covers" in out
    assert err.strip().startswith(f"CommandError: job {job.pk} is not complete: gap:")
    code, out, _ = cli("status", str(job.pk))
    assert "failed: verification failed: gap:" in out


def test_an_overlap_fails_the_job():
    seed(400)
    job = planned_job("tests.bump_range", {"partitions": 4})
    Partition.objects.filter(job=job, seq=1).update(upper=Partition.objects.get(job=job, seq=2).upper)
    job = run_to_end(job)
    assert job.status == "failed"
    assert job.error.startswith("verification failed: overlap: partition 2 ")


def test_the_job_page_shows_why_verification_failed(superuser, admin_env):
    seed(200)
    job = planned_job("tests.bump_range", {"partitions": 2})
    Partition.objects.filter(job=job, seq=1).delete()
    job = run_to_end(job)
    client = Client()
    client.force_login(superuser)
    page = client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert "verification failed: gap: no committed partition covers" in page


def test_a_range_job_split_mid_run_still_verifies(settings):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(1000)
    job = planned_job("tests.bump_range", {"partitions": 1})
    holder = claimed(job)
    new = split_now(holder)
    assert new is not None
    claiming.partition_release(holder.pk, holder.lease_token, actor="test", reason="test")
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    assert Partition.objects.filter(job=job).count() == 2
    assert verification.job_verify(job.pk).complete


def test_a_modulo_job_split_n_to_2n_verifies_and_a_lost_half_would_not(settings):
    settings.PARTITIONS_SPLIT_MIN_BATCHES = 1
    seed(0, events=600)
    job = planned_job("tests.mark_modulo", {"buckets": 2})
    assert job.key_space["groups"][0]["bounds"] == [[1, 0]]
    holder = claimed(job)
    new = split_now(holder)
    assert (new.modulus, new.remainder) == (4, holder.remainder + 2)
    claiming.partition_release(holder.pk, holder.lease_token, actor="test", reason="test")
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    new.delete()
    report = verification.job_verify(job.pk)
    assert report.problems == [f"gap: no committed partition covers id % 4 = {holder.remainder + 2}"]


def test_an_items_job_with_a_planned_sub_job_gone_fails_verification():
    job = planned_job("tests.items_serial", {"count": 30, "chunk_size": 10})
    SubJob.objects.filter(job=job, seq=29).delete()
    job = run_to_end(job)
    assert job.status == "failed"
    assert job.error == "verification failed: 1 planned sub-job missing"


def test_a_job_planned_before_the_record_is_checked_against_its_whole_key_space():
    seed(200)
    job = planned_job("tests.bump_range", {"partitions": 2})
    Job.objects.filter(pk=job.pk).update(key_space=None)
    job = run_to_end(job)
    assert job.status == "succeeded", job.error
    Partition.objects.filter(job=job, seq=0).delete()
    assert verification.job_verify(job.pk).problems[0].startswith("gap: no committed partition covers [(-inf), (")


def test_a_pruned_job_is_verified_without_its_sub_jobs_and_says_so():
    job = run_to_end(planned_job("tests.items_serial", {"count": 20, "chunk_size": 10}))
    SubJob.objects.filter(job=job).delete()
    Job.objects.filter(pk=job.pk).update(pruned_at=timezone.now())
    code, out, _ = cli("verify", str(job.pk))
    assert code == 0 and out.strip().endswith("; not checked: its sub-jobs (deleted with its history by retention)")


# The job type's invariant ---------------------------------------------------------------------------------------

def migration(subscriptions: int = 400) -> Job:
    seed(subscriptions, products=2)
    return planned_job("billing.migrate_subscriptions", {
        "since": (timezone.now() - timedelta(days=1)).isoformat(), "rows_per_partition": 100})


def test_the_demo_migration_holds_its_invariant():
    job = run_to_end(migration())
    assert job.status == "succeeded", job.error


def test_a_failed_invariant_fails_the_job_with_its_reason():
    job = drained(migration())
    stale = Subscription.objects.filter(product__version=2).order_by("pk").first()
    Subscription.objects.filter(pk=stale.pk).update(product_version=1)  # as if its batch had been lost
    job = finalized(job)
    assert job.status == "failed"
    assert job.error == (f"verification failed: invariant failed: subscription {stale.pk} of product "
                         f"{stale.product_id} is still on an old version")
    code, out, _ = cli("verify", str(job.pk), "--json")
    assert code == 1 and json.loads(out)["invariant"].startswith(f"subscription {stale.pk} ")


# Skipped items count as handled ----------------------------------------------------------------------------------

NO_ADDRESS = "ValueError: customer <n> has no address"
NO_TAX = "LookupError: no tax rate for region <n>"


def test_skipping_the_last_failures_of_a_failed_job_finalizes_it_succeeded_with_who_skipped(operator):
    job = run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))
    assert job.status == "failed"
    assert services.subjobs_skip(job.pk, reason=NO_TAX, note="no tax in 2026", actor=operator) == 5
    assert Job.objects.get(pk=job.pk).status == "failed"  # items of another reason are still failed
    assert services.subjobs_skip(job.pk, reason=NO_ADDRESS, note="moved away", actor=operator) == 5
    job.refresh_from_db()
    assert job.status == "finalizing" and job.finished_at is None
    assert path(Job, "failed", "succeeded") == ["finalizing", "succeeded"]  # the table's new edge, walked
    requested = JobEvent.objects.get(job=job, type="job_finalize_requested")
    assert requested.actor_user == operator
    job = finalized(job)
    assert job.status == "succeeded", job.error
    label = f"user:{operator.get_username()}"
    assert job.stats["verification"]["skipped"] == 15
    assert job.stats["verification"]["skipped_by"] == [label, JOB_CODE]
    succeeded = JobEvent.objects.get(job=job, type="job_succeeded")
    assert (succeeded.data["skipped"], succeeded.data["skipped_by"]) == (15, [label, JOB_CODE])
    _, out, _ = cli("status", str(job.pk))
    assert f"succeeded: 15 items skipped by {operator.get_username()}, {JOB_CODE}" in out
    [attempt] = job_run_statistics(job)["attempts"]  # the skip settled items of run 1: no new attempt
    assert attempt["outcome"] == "succeeded"


def test_an_attempt_finalized_again_ends_with_that_finalize_and_its_time_ended_is_no_work():
    start = timezone.now()

    def at(seconds: float):
        return start + timedelta(seconds=seconds)

    [attempt] = attempts_of([Mark("planning_started", at(0)), Mark("planning_finished", at(1)),
                             Mark("finalizing_started", at(10)), Mark("job_failed", at(11)),
                             Mark("finalizing_started", at(100)), Mark("job_succeeded", at(101))], handled_now=5)
    assert (attempt.outcome, attempt.ended_at, attempt.finalize) == ("succeeded", at(101), (at(100), at(101)))
    assert attempt.active_seconds(at(200)) == 12


def test_the_job_page_shows_the_skipped_items_of_a_succeeded_job(operator, superuser, admin_env):
    job = run_to_end(planned_job("tests.two_failures", {"count": 20, "chunk_size": 10}))
    for reason in (NO_TAX, NO_ADDRESS):
        services.subjobs_skip(job.pk, reason=reason, note="settled", actor=operator)
    assert maintenance.restart_lost_steps()["refinalized"] == 1  # tick, when the dispatched finalize is lost
    job.refresh_from_db()
    assert job.status == "succeeded"
    client = Client()
    client.force_login(superuser)
    page = client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert f"Succeeded: 6 items skipped by {operator.get_username()}" in page


# Cost --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("partitions", [2, 20])
def test_the_proof_costs_the_same_few_queries_whatever_the_number_of_partitions(
        partitions, django_assert_max_num_queries):
    seed(400)
    job = drained(planned_job("tests.bump_range", {"partitions": partitions}))
    with django_assert_max_num_queries(3):  # the job, its partitions' bounds, its sub-jobs' aggregate
        assert verification.job_verify(job.pk).complete
    # The whole finalize step: 18 statements before the proof, which adds its 2 reads (finalize has the job) and,
    # in a test's transaction, the savepoint pair of its own transaction.
    with django_assert_max_num_queries(18 + 2 + 2):
        steps.job_finalize(job.pk, worker_id="test-worker")
    assert Job.objects.get(pk=job.pk).status == "succeeded"
