"""Every idle worker in the fleet works, under real qcluster processes: all workers of three clusters hold a
lease at once, max_parallel caps it, a cluster started mid-job joins, and a kill -9'd worker's partition is
resumed long before its lease would expire (a SIGSTOPped one only after it expires: its connection is open)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db.models.functions import Now
from django_q.models import Task

from opsapp.billing.models import Subscription
from opsapp.billing.seeding import seed_demo
from partitions.models import Job, JobEvent, Partition
from partitions.operations import services
from tests import jobtypes  # noqa: F401 - registers tests.sleepy and tests.bump_range here too
from tests.support import Cluster, finished, stop_outside_a_commit, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def live_leases(job: Job) -> int:
    return Partition.objects.filter(job=job, status="running", lease_expires_at__gt=Now()).count()


def wait_until_up(running: list[Cluster], workers: int) -> None:
    """Every worker process has started (each one runs a tick when it spawns)."""
    wait_for(lambda: Task.objects.filter(func="partitions.tasks.tick").count() >= workers, timeout=60,
             what="every worker to start", clusters=running)


def peak_in_flight(job: Job, running: list[Cluster], *, until: int | None = None) -> int:
    """Sample the live leases every 0.1 s until the job ends (or `until` are seen at once); the highest count."""
    peak = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        peak = max(peak, live_leases(job))
        if (until is not None and peak >= until) or Job.objects.get(pk=job.pk).status in {"succeeded", "failed"}:
            return peak
        time.sleep(0.1)
    raise AssertionError(f"job {job.pk} still running after 120 s:\n{running[0].tail()}")


def test_every_worker_of_three_clusters_holds_a_lease_at_the_same_moment(clusters):
    running = clusters(3)
    wait_until_up(running, 6)
    job, _ = services.job_start("tests.sleepy", {"partitions": 30, "sleep_ms": 1500}, actor="test")
    assert peak_in_flight(job, running, until=6) == 6
    assert Job.objects.get(pk=job.pk).status == "running", "all six were busy early in the job"
    assert finished(job, running).status == "succeeded"


def test_max_parallel_caps_the_fleet_at_every_moment(clusters):
    running = clusters(3)
    wait_until_up(running, 6)
    job, _ = services.job_start("tests.sleepy", {"partitions": 12, "sleep_ms": 600}, actor="test", max_parallel=2)
    assert peak_in_flight(job, running) == 2
    assert finished(job, running).status == "succeeded"


def test_a_cluster_started_in_the_middle_of_a_job_works_on_it(clusters):
    first = clusters(1)
    job, _ = services.job_start("tests.sleepy", {"partitions": 24, "sleep_ms": 1000}, actor="test")
    wait_for(lambda: Partition.objects.filter(job=job, status="succeeded").count() >= 2, timeout=60,
             what="the first partitions to finish", clusters=first)
    [late] = clusters(1)
    wait_for(lambda: any(int(owner.split(":")[1]) in late.pids() for owner in JobEvent.objects.filter(
        job=job, type="partition_claimed").values_list("actor", flat=True)), timeout=30,
        what="the late cluster to claim a partition", clusters=[*first, late])
    assert finished(job, [*first, late]).status == "succeeded"


def _holder_pid(partition: Partition) -> int:
    return int(partition.lease_owner.split(":")[1])


LONG_LEASE = {"PARTITIONS_LEASE_SECONDS": "120", "PARTITIONS_DRAIN_BUDGET_SECONDS": "30", "Q_TIMEOUT": "120",
              "Q_RETRY": "400"}


def test_a_killed_workers_partition_is_resumed_long_before_its_lease_expires_and_nothing_is_redone(clusters):
    seed_demo(products=1, subscriptions=3000, customers=1, events=0)
    running = clusters(2, **LONG_LEASE)
    job, _ = services.job_start("tests.bump_range", {"partitions": 1, "sleep_ms": 60}, actor="test")
    wait_for(lambda: Partition.objects.filter(job=job, status="running", done_items__gte=500).exists(),
             timeout=60, what="the partition to make progress", clusters=running)
    held = Partition.objects.get(job=job)
    os.kill(_holder_pid(held), signal.SIGKILL)
    wait_for(lambda: Partition.objects.get(pk=held.pk).lease_token > held.lease_token, timeout=30,
             what="another worker to take the partition over", clusters=running)
    takeover = JobEvent.objects.filter(partition=held, type="partition_claimed").latest("id")
    assert takeover.actor != held.lease_owner
    assert takeover.created_at < held.lease_expires_at, "re-claimed while the dead holder's lease was still valid"
    assert finished(job, running).status == "succeeded"
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}, "every row bumped once"


def test_a_stopped_worker_keeps_its_lease_until_it_expires_and_its_writes_are_then_fenced(clusters):
    seed_demo(products=1, subscriptions=3000, customers=1, events=0)
    running = clusters(2, PARTITIONS_LEASE_SECONDS="4")
    job, _ = services.job_start("tests.bump_range", {"partitions": 1, "sleep_ms": 60}, actor="test")
    wait_for(lambda: Partition.objects.filter(job=job, status="running", done_items__gte=500).exists(),
             timeout=60, what="the partition to make progress", clusters=running)
    held = Partition.objects.get(job=job)
    pid = _holder_pid(held)
    stop_outside_a_commit(pid, held.pk)
    try:
        time.sleep(0.5)  # a renewal already sent lands; nothing renews after that
        frozen = Partition.objects.get(pk=held.pk)
        assert frozen.lease_token == held.lease_token
        wait_for(lambda: Partition.objects.get(pk=held.pk).lease_token > held.lease_token, timeout=60,
                 what="another worker to take the partition over", clusters=running)
        takeover = JobEvent.objects.filter(partition=held, type="partition_claimed").latest("id")
        # Its connection stayed open, so only the lease's expiry let the other worker in.
        assert takeover.created_at >= frozen.lease_expires_at
        assert takeover.actor != held.lease_owner
    finally:
        os.kill(pid, signal.SIGCONT)
    assert finished(job, running).status == "succeeded"
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}, \
        "the stopped holder's late batch was fenced: every row bumped exactly once"
