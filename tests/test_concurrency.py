"""The concurrency invariants, proven with real OS processes racing on the real test database.

Every test forks worker processes ("fork" context) after closing the parent's
connections, so each child opens its own connection. A child reports through a
JSON file, closes its connections and leaves with os._exit (no pytest teardown
runs in it). Crashes and stalls are real SIGKILL / SIGSTOP. Every wait is bounded
by WAIT seconds, and the `children` fixture kills whatever is still alive before
the test database is flushed, so a failure cannot hang the suite.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Now

from opsapp.billing.models import Subscription
from partitions.core.exceptions import LeaseLost
from partitions.engine import claiming
from partitions.models import Job, JobEvent, Partition
from partitions.worker import drain, steps
from partitions.worker.commit import apply_outcome
from partitions.worker.run import run_partition
from tests.factories import make_job, make_partition
from tests.support import WAIT, planned_job, seed, started_job, stop_outside_a_commit

pytestmark = [pytest.mark.usefixtures("no_dispatcher"), pytest.mark.slow]

def _ready(barrier) -> None:
    """Connect first, then wait for the others, so the race starts at the same instant."""
    connection.ensure_connection()
    barrier.wait(timeout=WAIT)


def _claim_and_complete_until_none_left(barrier, job_id: int, worker: str, max_limit: int) -> dict:
    _ready(barrier)
    rng = random.Random(worker)
    claimed, last, deadline = [], 0, time.monotonic() + WAIT
    while time.monotonic() < deadline:
        batch = claiming.partition_claim(worker_id=worker, lease_seconds=300, job_id=job_id,
                                         limit=rng.randint(1, max_limit))
        if not batch:
            # Empty also when every claimable row is locked by another claimer: stop only when none is pending.
            if not Partition.objects.filter(job_id=job_id, status="pending").exists():
                break
            continue
        for p in batch:
            claimed.append(p.pk)
            last += bool(_held_or_lost(claiming.partitions_complete([(p.pk, p.lease_token, {})], actor=worker),
                                       p.pk, p.lease_token))
    return {"claimed": claimed, "last": last}


def _claim_without_completing(barrier, job_id: int, worker: str, rounds: int) -> list[int]:
    _ready(barrier)
    rng = random.Random(worker)
    claimed = []
    for _ in range(rounds):
        claimed += [p.pk for p in claiming.partition_claim(worker_id=worker, lease_seconds=300, job_id=job_id,
                                                           limit=rng.randint(1, 3))]
    # Holders stay alive until every claimer is done: a process that exits takes its leases with it
    # (its backend is gone), and this test is about live holders.
    barrier.wait(timeout=WAIT)
    return claimed


def _claim_one(job_id: int, worker: str, lease_seconds: float) -> dict | None:
    claimed = claiming.partition_claim(worker_id=worker, lease_seconds=lease_seconds, job_id=job_id)
    return {"id": claimed[0].pk, "token": claimed[0].lease_token} if claimed else None


def _reap(actor: str) -> dict:
    return claiming.partitions_reap_expired(actor=actor)


def _drain(job_id: int, worker: str) -> dict:
    """One drain that returns once nothing is claimable: no standby for the other holders' leases, which
    would keep a worker whose lease was taken over waiting out its budget."""
    report = drain(budget_seconds=WAIT, job_id=job_id, worker=worker, standby=False)
    return {"partitions": report.partitions, "outcomes": dict(report.outcomes)}


def _drain_until_settled(job_id: int, worker: str) -> dict:
    """Drain until no partition of the job is pending or running (waits out other workers' leases)."""
    outcomes, deadline = Counter(), time.monotonic() + WAIT
    while Partition.objects.filter(job_id=job_id, status__in=["pending", "running"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not settle")
        report = drain(budget_seconds=WAIT, job_id=job_id, worker=worker)
        outcomes.update(report.outcomes)
        if not report.partitions:
            time.sleep(0.05)
    return {"outcomes": dict(outcomes)}


def _race_plan(barrier, job_id: int, worker: str) -> bool:
    _ready(barrier)
    return steps.job_plan(job_id, worker_id=worker) is not None


def _race_finalize(barrier, job_id: int, worker: str) -> bool:
    _ready(barrier)
    return steps.job_finalize(job_id, worker_id=worker) is not None


# Parent-side helpers -----------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll until predicate() is truthy (and return it); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return value


def lease_expired(partition_id: int) -> bool:
    """By the database clock, the only one the engine trusts."""
    return Partition.objects.filter(pk=partition_id, lease_expires_at__lte=Now()).exists()


FENCED_FIELDS = ("status", "checkpoint", "done_items", "failed_items", "skipped_items", "attempts", "lease_owner",
                 "lease_token", "lease_expires_at", "available_at", "finished_at", "last_error")


def row_state(partition_id: int) -> dict:
    return Partition.objects.values(*FENCED_FIELDS).get(pk=partition_id)


def _held_or_lost(result, partition_id: int, token: int):
    """A batch API's answer for one held partition: the ids it kept or moved (renew), or (moved ids, jobs left
    with nothing unfinished) (complete); LeaseLost when the partition is not among them, as a fenced row write."""
    moved, rest = (result, None) if isinstance(result, set) else result
    if partition_id not in moved:
        raise LeaseLost(partition_id, token)
    return moved if rest is None else rest


def stale_writes(partition_id: int, token: int, actor: str) -> dict[str, Callable[[], Any]]:
    """Every write a worker makes about a partition it holds, with the given token."""
    return {
        "checkpoint": lambda: claiming.partition_checkpoint(partition_id, token, checkpoint=["stale"], done=99,
                                                            failed=9, skipped=9, lease_seconds=300),
        "renew_lease": lambda: _held_or_lost(claiming.partitions_renew_leases([(partition_id, token, 300)]),
                                             partition_id, token),
        "complete": lambda: _held_or_lost(claiming.partitions_complete([(partition_id, token, {})], actor=actor),
                                          partition_id, token),
        "fail": lambda: claiming.partition_fail(partition_id, token, actor=actor, error="stale", retry_after=0),
        "fail_final": lambda: claiming.partition_fail(partition_id, token, actor=actor, error="stale",
                                                      retry_after=0, final=True),
        "release": lambda: claiming.partition_release(partition_id, token, actor=actor, reason="stale"),
        "cancel": lambda: claiming.partition_cancel(partition_id, token, actor=actor, reason="stale"),
    }


def assert_every_stale_write_is_fenced(partition_id: int, token: int, actor: str) -> None:
    before, events_before = row_state(partition_id), JobEvent.objects.filter(partition_id=partition_id).count()
    for name, write in stale_writes(partition_id, token, actor).items():
        try:
            write()
        except LeaseLost:
            pass
        else:
            pytest.fail(f"{name} with the old token was accepted on a {before['status']} partition")
        assert row_state(partition_id) == before, f"{name} with the old token changed the row"
    assert JobEvent.objects.filter(partition_id=partition_id).count() == events_before


def claim_events(partition_id: int) -> list[tuple[int, int, str]]:
    """(attempt, token, actor) of every claim of a partition, oldest first."""
    return [(e.data["attempt"], e.data["token"], e.actor)
            for e in JobEvent.objects.filter(partition_id=partition_id, type="partition_claimed").order_by("id")]


def versions_in_key_order() -> list[int]:
    return list(Subscription.objects.order_by("created_at", "id").values_list("product_version", flat=True))


def assert_every_subscription_bumped_exactly_once(total: int) -> None:
    assert Subscription.objects.count() == total
    assert dict(Counter(Subscription.objects.values_list("product_version", flat=True))) == {2: total}


# 1. No double claim ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_eight_processes_racing_over_2000_partitions_claim_each_exactly_once(children):
    job = make_job(status="running")
    Partition.objects.bulk_create([Partition(job=job, seq=seq, kind="range", key=["created_at", "id"])
                                   for seq in range(2000)])
    workers = [f"claimer-{i}" for i in range(8)]

    reports = children.race(_claim_and_complete_until_none_left, lambda i: (job.pk, workers[i], 4), 8, "claimer")

    claimed_by = {}
    for worker, report in zip(workers, reports, strict=True):
        for pk in report["claimed"]:
            assert pk not in claimed_by, f"partition {pk} claimed by {claimed_by[pk]} and {worker}"
            claimed_by[pk] = worker
    all_ids = set(Partition.objects.filter(job=job).values_list("pk", flat=True))
    assert set(claimed_by) == all_ids and len(all_ids) == 2000
    assert sum(1 for r in reports if r["claimed"]) > 1, "the processes did not actually race"
    rows = Partition.objects.filter(job=job)
    assert dict(Counter(rows.values_list("status", flat=True))) == {"succeeded": 2000}
    assert set(rows.values_list("attempts", "lease_token")) == {(1, 1)}
    claims = JobEvent.objects.filter(job=job, type="partition_claimed")
    per_partition = Counter(claims.values_list("partition_id", flat=True))
    assert set(per_partition) == all_ids and set(per_partition.values()) == {1}
    assert dict(claims.values_list("partition_id", "actor")) == claimed_by
    successes = JobEvent.objects.filter(job=job, type="partition_succeeded")
    assert successes.values("partition_id").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert successes.count() == 2000
    # The last-partition check runs after each completion commits, so at least one completer learns the
    # job is done (several may; the singleton finalize claim lets one through): finalize is never missed.
    assert sum(r["last"] for r in reports) >= 1


@pytest.mark.django_db(transaction=True)
def test_processes_racing_on_a_job_with_max_parallel_3_never_hold_more_than_3_live_leases(children):
    job = make_job(status="running", max_parallel=3)
    Partition.objects.bulk_create([Partition(job=job, seq=seq, kind="range", key=["created_at", "id"])
                                   for seq in range(20)])

    reports = children.race(_claim_without_completing, lambda i: (job.pk, f"capped-{i}", 25), 8, "capped")

    claimed = [pk for report in reports for pk in report]
    assert len(claimed) == len(set(claimed)) == 3
    assert Partition.objects.filter(job=job, status="running").count() == 3
    assert Partition.objects.filter(job=job, status="running", lease_expires_at__gt=Now()).count() == 3
    assert set(Partition.objects.filter(job=job, status="running").values_list("pk", flat=True)) == set(claimed)
    assert JobEvent.objects.filter(job=job, type="partition_claimed").count() == 3


# 2. Fencing --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_after_another_process_takes_over_an_expired_lease_every_write_with_the_old_token_is_refused(children):
    job = make_job(status="running")
    part = make_partition(job)
    [old] = claiming.partition_claim(worker_id="old-worker", lease_seconds=0.2, job_id=job.pk)
    claiming.partition_checkpoint(old.pk, old.lease_token, checkpoint=["2024-01-01T00:00:00Z", 10], done=10,
                                  lease_seconds=0.2)
    wait_for(lambda: lease_expired(part.pk), "the old lease to expire")

    new = children.start(_claim_one, job.pk, "new-worker", 300.0, name="new-worker").result()

    assert new == {"id": part.pk, "token": old.lease_token + 1}
    state = row_state(part.pk)
    assert (state["lease_owner"], state["attempts"], state["done_items"]) == ("new-worker", 2, 10)
    assert state["checkpoint"] == ["2024-01-01T00:00:00Z", 10], "the new holder resumes at the checkpoint"
    assert_every_stale_write_is_fenced(part.pk, old.lease_token, "old-worker")

    # The new holder's writes still work.
    assert claiming.partitions_renew_leases([(part.pk, new["token"], 300)]) == {part.pk}
    claiming.partition_checkpoint(part.pk, new["token"], checkpoint=["2024-01-01T00:00:05Z", 15], done=5,
                                  lease_seconds=300)
    state = row_state(part.pk)
    assert (state["checkpoint"], state["done_items"]) == (["2024-01-01T00:00:05Z", 15], 15)
    assert claiming.partitions_complete([(part.pk, new["token"], {})], actor="new-worker") == ({part.pk}, {job.pk})
    assert row_state(part.pk)["status"] == "succeeded"
    assert not JobEvent.objects.filter(partition_id=part.pk, actor="old-worker").exclude(
        type__in=["partition_claimed"]).exists()


@pytest.mark.django_db(transaction=True)
def test_a_lease_reaped_by_another_process_fences_its_old_holder_too(children):
    job = make_job(status="running")
    requeued = make_partition(job, seq=0)
    exhausted = make_partition(job, seq=1, max_attempts=1)
    held = {p.pk: p for p in claiming.partition_claim(worker_id="stalled", lease_seconds=0.2, job_id=job.pk, limit=2)}
    assert set(held) == {requeued.pk, exhausted.pk}
    wait_for(lambda: lease_expired(requeued.pk) and lease_expired(exhausted.pk), "both leases to expire")

    assert children.start(_reap, "reaper", name="reaper").result() == {"requeued": 1, "failed": 1}

    assert row_state(requeued.pk)["status"] == "pending"
    assert row_state(exhausted.pk)["status"] == "failed"
    for pk, p in held.items():
        assert_every_stale_write_is_fenced(pk, p.lease_token, "stalled")


@pytest.mark.django_db(transaction=True)
def test_a_runner_whose_lease_is_taken_over_mid_batch_rolls_its_batch_back(children, settings):
    settings.PARTITIONS_LEASE_SECONDS = 1.0
    seed(subscriptions=600)
    job = planned_job("tests.bump_range", {"partitions": 1, "sleep_ms": 150})
    [part] = Partition.objects.filter(job=job)
    old = children.start(_drain, job.pk, "old-worker", name="old-worker")
    wait_for(lambda: Partition.objects.filter(pk=part.pk, done_items__gt=0).exists(), "a first checkpoint")

    stop_outside_a_commit(old.pid, part.pk)  # a stalled worker (GC pause, frozen VM): its lease keeper stops too
    wait_for(lambda: lease_expired(part.pk), "the stalled worker's lease to expire")
    [taken] = claiming.partition_claim(worker_id="new-worker", lease_seconds=300, job_id=job.pk)
    old.signal(signal.SIGCONT)
    report = old.result()

    assert report["outcomes"] == {"lease_lost": 1}
    state = row_state(part.pk)
    assert (state["lease_owner"], state["lease_token"], state["status"]) == ("new-worker", 2, "running")
    assert (state["checkpoint"], state["done_items"]) == (taken.checkpoint, taken.done_items)
    # Exactly the rows up to the checkpoint are bumped: the batch the old worker had in flight was rolled back.
    done = taken.done_items
    assert 0 < done < 600
    assert versions_in_key_order() == [2] * done + [1] * (600 - done)

    outcome = run_partition(taken, worker_id="new-worker")
    assert outcome.kind == "succeeded" and outcome.stats["done"] == 600 - done
    assert apply_outcome(taken, outcome, worker_id="new-worker") is True
    assert steps.job_finalize(job.pk, worker_id="test").status == "succeeded"
    assert_every_subscription_bumped_exactly_once(600)


# 3. Crash resume / exactly once ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_sigkilled_worker_s_partition_resumes_at_its_checkpoint_and_every_row_is_bumped_exactly_once(
        children, settings):
    settings.PARTITIONS_LEASE_SECONDS = 2.0
    seed(subscriptions=3000)
    job = planned_job("tests.bump_range", {"partitions": 2, "sleep_ms": 100})
    doomed = children.start(_drain, job.pk, "doomed", name="doomed")
    victim = wait_for(lambda: Partition.objects.filter(job=job, done_items__gt=0).first(), "a first checkpoint")

    doomed.signal(signal.SIGKILL)
    doomed.proc.join(WAIT)
    assert doomed.proc.exitcode == -signal.SIGKILL
    wait_for(lambda: lease_expired(victim.pk), "the dead worker's lease to expire")
    assert claiming.partitions_reap_expired(actor="test-reaper") == {"requeued": 1, "failed": 0}
    victim.refresh_from_db()  # what the dead worker committed: its checkpoint and counter
    assert (victim.status, victim.attempts, victim.lease_owner) == ("pending", 1, "doomed")
    committed = victim.done_items
    assert committed > 0 and victim.checkpoint is not None

    rescuers = [children.start(_drain_until_settled, job.pk, f"rescuer-{i}", name=f"rescuer-{i}") for i in range(2)]
    for rescuer in rescuers:
        rescuer.result()
    job = steps.job_finalize(job.pk, worker_id="test")

    assert job is not None and job.status == "succeeded", job and job.error
    assert_every_subscription_bumped_exactly_once(3000)
    victim.refresh_from_db()
    assert victim.status == "succeeded"
    (first, second) = claim_events(victim.pk)
    assert first == (1, 1, "doomed") and second[:2] == (2, 2) and second[2].startswith("rescuer-")
    assert JobEvent.objects.filter(partition_id=victim.pk, type="partition_lease_expired").count() == 1
    # The second run started at the checkpoint: it processed only what the dead worker had not committed.
    [succeeded] = JobEvent.objects.filter(partition_id=victim.pk, type="partition_succeeded")
    assert succeeded.data["done"] == victim.done_items - committed < victim.done_items
    assert sum(Partition.objects.filter(job=job).values_list("done_items", flat=True)) == 3000


@pytest.mark.django_db(transaction=True)
def test_a_sigstopped_worker_loses_its_lease_and_after_sigcont_its_writes_are_fenced(children, settings):
    settings.PARTITIONS_LEASE_SECONDS = 1.0
    seed(subscriptions=1000)
    job = planned_job("tests.bump_range", {"partitions": 2, "sleep_ms": 100})
    paused = children.start(_drain, job.pk, "paused", name="paused")
    victim = wait_for(lambda: Partition.objects.filter(job=job, done_items__gt=0).first(), "a first checkpoint")

    stop_outside_a_commit(paused.pid, victim.pk)
    rival = children.start(_drain_until_settled, job.pk, "rival", name="rival")
    # The rival claims the expired lease itself (no reaper), while the paused worker may hold an uncommitted batch.
    wait_for(lambda: Partition.objects.filter(pk=victim.pk, lease_owner="rival").exists(), "the rival's takeover")
    paused.signal(signal.SIGCONT)

    assert paused.result()["outcomes"] == {"lease_lost": 1}
    assert "lease_lost" not in rival.result()["outcomes"]
    job = steps.job_finalize(job.pk, worker_id="test")
    assert job is not None and job.status == "succeeded", job and job.error
    assert_every_subscription_bumped_exactly_once(1000)
    assert [c[:2] for c in claim_events(victim.pk)] == [(1, 1), (2, 2)]
    assert sum(Partition.objects.filter(job=job).values_list("done_items", flat=True)) == 1000
    # Nothing the paused worker tried after it lost the lease was recorded.
    assert set(JobEvent.objects.filter(partition_id=victim.pk, actor="paused").values_list("type", flat=True)) == {
        "partition_claimed"}


# 4. Singleton steps ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_six_processes_racing_to_plan_one_job_plan_it_exactly_once(children):
    seed(subscriptions=400)
    job = started_job("tests.bump_range", {"partitions": 4})

    won = children.race(_race_plan, lambda i: (job.pk, f"planner-{i}"), 6, "planner")

    assert sum(won) == 1
    job.refresh_from_db()
    assert job.status == "running" and job.step_owner == f"planner-{won.index(True)}"
    events = JobEvent.objects.filter(job=job)
    assert events.filter(type="planning_started").count() == 1
    assert events.filter(type="planning_finished").count() == 1
    assert sorted(Partition.objects.filter(job=job).values_list("seq", flat=True)) == [0, 1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_six_processes_racing_to_finalize_one_job_finalize_it_exactly_once(children):
    job = make_job(status="running")
    for seq in range(5):
        make_partition(job, seq=seq, status="succeeded")

    won = children.race(_race_finalize, lambda i: (job.pk, f"finalizer-{i}"), 6, "finalizer")

    assert sum(won) == 1
    job.refresh_from_db()
    assert job.status == "succeeded" and job.step_owner == f"finalizer-{won.index(True)}"
    events = JobEvent.objects.filter(job=job)
    assert events.filter(type="finalizing_started").count() == 1
    assert events.filter(type="job_succeeded").count() == 1
    assert not events.filter(type="job_failed").exists()
    assert Job.objects.filter(pk=job.pk, finished_at__isnull=False).exists()
