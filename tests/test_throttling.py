"""Being kind to the database: adaptive batch size, timeouts retried smaller, the fleet-wide rate limit, and
health checks that hold a job (real PostgreSQL; real qclusters where the fleet matters)."""

from __future__ import annotations

import statistics
import time
from itertools import pairwise

import psycopg
import pytest
from django.db import connection

from partitions.engine import health
from partitions.models import Job, JobEvent, Partition
from partitions.operations import services
from partitions.worker.sizing import STEP, BatchSizer
from tests.factories import move
from tests.support import cli, finished, planned_job, run_to_end, seed, started_job, wait_for
from tests.test_bad_input import assert_refused_in_one_line
from tests.test_concurrency import assert_every_subscription_bumped_exactly_once

pytestmark = pytest.mark.django_db(transaction=True)


# Adaptive batch size -----------------------------------------------------------------------------------------

def test_adaptive_batches_grow_while_fast_and_shrink_when_slow_within_bounds_and_step(recorder):
    seed(1500)
    job = run_to_end(planned_job("tests.adaptive", {"partitions": 1, "fast_items": 700, "slow_ms": 8.0}))

    assert job.status == "succeeded"
    assert_every_subscription_bumped_exactly_once(1500)
    sizes = recorder.adaptive_batches[:-1]  # the last batch is whatever was left
    assert sizes[0] == 10  # the job type's batch_size
    assert all(5 <= size <= 200 for size in sizes)
    assert all(b / a <= STEP and a / b <= STEP for a, b in pairwise(sizes)), sizes
    peak = sizes.index(max(sizes))
    assert max(sizes) == 200, sizes  # fast items: grew to max_batch_size
    assert min(sizes[peak:]) < 100, sizes  # slow items (8 ms, target 250 ms): shrank toward 31
    assert 5 <= Partition.objects.get(job=job).batch_size <= 200
    reported = [10, *JobEvent.objects.filter(job=job, type="batch_size_changed").order_by("id")
                .values_list("data__batch_size", flat=True)]
    assert 3 <= len(reported) <= len(sizes) / 2  # large changes only, not one per batch
    assert all(max(a, b) >= 2 * min(a, b) for a, b in pairwise(reported)), reported


def test_a_sizer_never_moves_by_more_than_its_step_whatever_one_batch_measures():
    sizer = BatchSizer(100, target_seconds=1.0, low=10, high=1000)
    sizer.observe(100, 1000.0)  # one pathological batch
    assert sizer.size == 67
    sizer.observe(67, 0.0001)
    assert sizer.size <= int(67 * STEP)
    fixed = BatchSizer(100, target_seconds=None, low=1, high=10_000)
    fixed.observe(100, 1000.0)
    assert fixed.size == 100
    assert fixed.halve() and fixed.size == 50


# Statement and lock timeouts ---------------------------------------------------------------------------------

def test_a_batch_stopped_by_statement_timeout_is_retried_at_half_size_and_every_row_is_bumped_once(recorder):
    seed(600)
    job = run_to_end(planned_job("tests.times_out", {"partitions": 1, "max_items": 20}))

    assert job.status == "succeeded"
    assert_every_subscription_bumped_exactly_once(600)  # the timed-out batches rolled back their bumps
    assert recorder.timeout_batches[:4] == [100, 50, 25, 12]
    partition = Partition.objects.get(job=job)
    assert partition.attempts == 1 and partition.batch_size == 12
    whys = list(JobEvent.objects.filter(job=job, type="batch_size_changed").values_list("data__why", flat=True))
    assert len(whys) == 3 and all("canceling statement due to statement timeout" in why for why in whys)


def test_a_batch_that_still_times_out_at_its_minimum_size_fails_the_attempt(recorder):
    seed(200)
    job = run_to_end(planned_job("tests.times_out_at_minimum", {"partitions": 1, "max_items": 20}))

    partition = Partition.objects.get(job=job)
    assert recorder.timeout_batches[:4] == [100, 50, 40, 100]  # halved to the minimum, failed, retried afresh
    assert partition.status == "failed" and partition.attempts == partition.max_attempts
    assert "statement timeout" in partition.last_error and partition.done_items == 0
    assert job.status == "failed"


# Rate limits: the operator's knobs ---------------------------------------------------------------------------

def test_throttle_from_the_cli_changes_the_running_job_and_is_audited():
    job = started_job("tests.bump_range", {"partitions": 1})
    code, out, err = cli("throttle", str(job.pk), "--rate", "250", "--pause-ms", "20", "--json")
    assert code == 0, err
    job.refresh_from_db()
    assert (job.rate_limit, job.pause_ms) == (250.0, 20)
    changed = JobEvent.objects.get(job=job, type="job_throttle_changed")
    assert changed.actor == "cli" and changed.data["after"]["rate_limit"] == 250.0
    code, out, err = cli("throttle", str(job.pk), "--rate", "none")
    assert code == 0 and "20 ms pause after each batch" in out
    job.refresh_from_db()
    assert job.rate_limit is None and job.pause_ms == 20


@pytest.mark.parametrize(("args", "expected"), [
    (["--rate", "-5"], "rate_limit: Enter items per second"), (["--rate", "1e12"], "rate_limit: Enter items"),
    (["--rate", "fast"], "not a rate in items per second"), (["--rate", "nan"], "not a finite rate"),
    (["--pause-ms", "-1"], "pause_ms: Enter milliseconds"), (["--pause-ms", "99999999"], "pause_ms: Enter"),
])
def test_bad_throttle_input_is_one_line_and_writes_nothing(args, expected):
    job = started_job("tests.bump_range", {"partitions": 1})
    code, _out, err = cli("throttle", str(job.pk), *args)
    assert_refused_in_one_line(code, err, expected)
    job.refresh_from_db()
    assert (job.rate_limit, job.pause_ms) == (None, 0)
    assert not JobEvent.objects.filter(job=job, type="job_throttle_changed").exists()


def test_a_new_job_takes_its_throttle_from_start_options_or_else_its_job_type():
    job = started_job("tests.bump_range", {"partitions": 1}, rate_limit=40, pause_ms=5)
    assert (job.rate_limit, job.pause_ms) == (40.0, 5)
    code, _out, err = cli("start", "tests.bump_range", "--param", "partitions=1", "--rate", "12.5", "--json")
    assert code == 0, err
    assert Job.objects.latest("id").rate_limit == 12.5
    code, _out, err = cli("start", "tests.bump_range", "--param", "partitions=1", "--rate", "0.0000001")
    assert code != 0 and "rate_limit" in err


def test_a_finished_job_cannot_be_throttled():
    job = run_to_end(planned_job("tests.bump_range", {"partitions": 1}))
    code, _out, err = cli("throttle", str(job.pk), "--rate", "10")
    assert code != 0 and "succeeded" in err


def test_ignoring_health_ends_the_episode_at_once_with_the_operator_named():
    job = started_job("tests.bump_range", {"partitions": 1})
    move(job, "running", throttled_since=job.created_at, throttled_reason="replication lag 99s > 60s")
    code, _out, err = cli("throttle", str(job.pk), "--ignore-health")
    assert code == 0, err
    job.refresh_from_db()
    assert job.ignore_health and job.throttled_since is None
    lifted = JobEvent.objects.get(job=job, type="job_throttle_lifted")
    assert lifted.actor == "cli" and "ignored" in lifted.data["why"]


# The fleet-wide rate limit under real workers ----------------------------------------------------------------

def done_at_db_time() -> tuple[float, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())::float8, coalesce(sum(done_items), 0) "
                       "FROM partitions_partition")
        at, done = cursor.fetchone()
    return at, int(done)


#: How long a rate is measured: a dozen of the limiter's slices (RATE_SLICE_SECONDS) of the whole fleet.
RATE_WINDOW_SECONDS = 3.0


def measured_rate(seconds: float = RATE_WINDOW_SECONDS) -> float:
    """Items/s over `seconds`: the least-squares slope of the partitions' done counters (their checkpoints)
    sampled every 0.1 s, so a batch landing at either end of the window barely moves it (a difference of two
    readings would be off by a whole batch, and need a window several times longer for the same error)."""
    samples, ends = [], time.monotonic() + seconds
    while time.monotonic() < ends:
        samples.append(done_at_db_time())
        time.sleep(0.1)
    return statistics.linear_regression([at for at, _ in samples], [done for _, done in samples]).slope


def started_rated(rate: float) -> Job:
    job = started_job("tests.bump_range", {"partitions": 8}, rate_limit=rate)
    wait_for(lambda: done_at_db_time()[1] > 0, timeout=60, what="the first checkpoint")
    time.sleep(1.5)  # every worker busy
    return job


@pytest.mark.slow
def test_a_rate_limit_holds_with_one_worker_process(clusters):
    seed(4000)
    fleet = clusters(1, Q_WORKERS="1")
    job = started_rated(150)
    rate = measured_rate()
    assert 0.8 * 150 <= rate <= 1.2 * 150, rate
    assert all(c.running() for c in fleet)
    services.job_cancel(job.pk, actor="test")  # the cluster then stops at once instead of draining its budget


@pytest.mark.slow
def test_a_rate_limit_holds_with_four_worker_processes_and_a_change_applies_without_restart(clusters):
    seed(6000)
    fleet = clusters(2)  # 2 clusters x 2 workers
    job = started_rated(300)
    rate = measured_rate()
    assert 0.8 * 300 <= rate <= 1.2 * 300, rate
    leases = Partition.objects.filter(job=job, status="running").count()
    assert leases >= 3  # the limit is shared by the fleet, not per worker

    services.job_throttle(job.pk, actor="test", rate_limit=100)
    time.sleep(2)  # the reservations made at the old rate (at most RATE_HORIZON_SECONDS ahead) run out
    slower = measured_rate()
    assert 0.8 * 100 <= slower <= 1.2 * 100, slower
    services.job_throttle(job.pk, actor="test", rate_limit=None)
    assert finished(job, fleet).status == "succeeded"
    assert_every_subscription_bumped_exactly_once(6000)


# Health checks under real workers -----------------------------------------------------------------------------

HEALTH_ENV = {"PARTITIONS_MAX_TRANSACTION_AGE_SECONDS": "2", "PARTITIONS_HEALTH_CHECK_SECONDS": "0.3"}


def assert_held_then_resumed(job: Job, fleet, release) -> Job:
    """The job shows it is throttled, makes no progress while it is, then ends once `release()` ran."""
    wait_for(lambda: Job.objects.get(pk=job.pk).throttled_since is not None, timeout=30,
             what="the job to show it is throttled", clusters=fleet)
    time.sleep(0.5)  # the batches in flight when the check failed finish
    held_at = done_at_db_time()[1]
    time.sleep(1.5)
    assert done_at_db_time()[1] == held_at  # every partition waits at its batch boundary
    partitions = list(Partition.objects.filter(job=job).values_list("status", "done_items", "lease_owner"))
    assert any(status == "running" for status, *_ in partitions), partitions  # waiting with the lease kept
    release()
    job = finished(job, fleet)
    assert job.status == "succeeded" and job.throttled_since is None
    episodes = JobEvent.objects.filter(job=job, type__in=["job_throttled", "job_throttle_lifted"]).order_by("id")
    assert [e.type for e in episodes] == ["job_throttled", "job_throttle_lifted"]
    return job


@pytest.mark.slow
def test_a_long_transaction_holds_the_job_which_resumes_by_itself_when_it_ends(clusters, db_url):
    seed(1500)
    fleet = clusters(1, **HEALTH_ENV)
    job = started_job("tests.bump_range", {"partitions": 2, "sleep_ms": 400})
    wait_for(lambda: done_at_db_time()[1] > 0, timeout=60, what="the first checkpoint", clusters=fleet)
    with psycopg.connect(db_url) as blocker:  # a transaction with an xid: it holds back vacuum
        blocker.execute("SELECT txid_current()")
        job = assert_held_then_resumed(job, fleet, release=blocker.commit)
    reason = JobEvent.objects.get(job=job, type="job_throttled").data["reason"]
    assert "transaction has been open" in reason
    assert_every_subscription_bumped_exactly_once(1500)


@pytest.mark.slow
def test_a_job_type_s_own_health_check_holds_it_the_same_way(clusters, tmp_path):
    seed(800)  # 3 s of work for two partitions: long enough to be held, short to finish
    gate = tmp_path / "gate"
    fleet = clusters(1, PARTITIONS_HEALTH_CHECK_SECONDS="0.3")
    job = started_job("tests.health_gated", {"partitions": 2, "sleep_ms": 400, "gate": str(gate)})
    wait_for(lambda: done_at_db_time()[1] > 0, timeout=60, what="the first checkpoint", clusters=fleet)
    gate.touch()
    job = assert_held_then_resumed(job, fleet, release=gate.unlink)
    assert JobEvent.objects.get(job=job, type="job_throttled").data["reason"] == "the gate file is there"


def test_the_database_verdict_sees_an_old_transaction_and_is_cached(settings, db_url):
    settings.PARTITIONS_MAX_TRANSACTION_AGE_SECONDS = 0.2
    settings.PARTITIONS_HEALTH_CHECK_SECONDS = 60
    health.forget()
    assert health.database_verdict()[0].ok
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SELECT txid_current()")
        time.sleep(0.4)
        assert health.database_verdict()[0].ok  # cached
        health.forget()
        verdict, _ = health.database_verdict()
        assert not verdict.ok and "transaction has been open" in verdict.reason
    health.forget()


def test_replication_lag_above_its_threshold_is_unhealthy_and_zero_turns_a_check_off(settings):
    settings.PARTITIONS_MAX_REPLICATION_LAG_SECONDS = 30
    assert not health._database_verdict(lag=31.0, oldest=None).ok
    assert "replication lag 31s > 30s" == health._database_verdict(lag=31.0, oldest=None).reason
    assert health._database_verdict(lag=29.0, oldest=None).ok
    settings.PARTITIONS_MAX_REPLICATION_LAG_SECONDS = None
    assert health._database_verdict(lag=3600.0, oldest=None).ok


@pytest.mark.parametrize(("attrs", "message"), [
    ({"target_batch_seconds": 0}, "target_batch_seconds must be > 0"),
    ({"target_batch_seconds": 1, "min_batch_size": 500}, "min_batch_size <= batch_size"),
    ({"target_batch_seconds": 1, "item_concurrency": 4, "atomic": False}, "leave it unset"),
    ({"rate_limit": -1.0}, "rate_limit: Enter items per second"),
    ({"pause_ms": 10**9}, "pause_ms: Enter milliseconds"),
])
def test_an_adaptive_job_type_that_cannot_work_is_refused_at_registration(attrs, message):
    from partitions.core.exceptions import JobCodeError
    from partitions.jobtypes.base import JobType

    declared = type("Bad", (JobType,), {"name": "tests.bad_adaptive", "batch_size": 100, **attrs})
    with pytest.raises(JobCodeError, match=message):
        declared.check_declaration()


def test_an_episode_left_open_on_an_ended_job_is_not_shown_as_held(admin_env, superuser):
    from django.test import Client
    from django.urls import reverse

    job = run_to_end(planned_job("tests.bump_range", {"partitions": 1}))
    Job.objects.filter(pk=job.pk).update(throttled_since=job.created_at, throttled_reason="replication lag")
    code, out, _ = cli("status", str(job.pk), "--json")
    assert code == 0 and __import__("json").loads(out)["throttle"]["held"] is False
    assert "held by a health check" not in cli("status", str(job.pk))[1]
    client = Client()
    client.force_login(superuser)
    page = client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert "held by a health check" not in page
