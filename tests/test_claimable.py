"""One definition of "claimable": claiming, the drain's wait, the dispatcher's slot count, the job list the
tick tops up, and the reaper agree on rows placed just either side of every condition. Plus what follows
from it: a drain facing only a lease on its last attempt returns at once, and jobs share the fleet by
priority, then by fewest live leases."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from partitions import worker
from partitions.engine import claiming
from partitions.models import JobEvent, Partition
from partitions.reads.progress import jobs_progress
from tests.factories import make_job, make_partition, move

pytestmark = pytest.mark.usefixtures("no_dispatcher")


def _backend() -> tuple[int, object]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        return cursor.fetchone()


def _gone_backend() -> tuple[int, object]:
    """The pid and start time of a backend that has exited (a process whose connection closed)."""
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k not in {"cursor_factory", "context"}}) as other:
        pid, started = other.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    with connection.cursor() as cursor:  # wait until the server has let it go
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                break
    return pid, started


def _cases() -> dict[str, tuple[Partition, bool, str]]:
    """name -> (partition in its own running job, claimable now?, what the reaper does: requeue/fail/keep)."""
    now = timezone.now()
    live_pid, live_started = _backend()
    dead_pid, dead_started = _gone_backend()
    past, future = now - timedelta(seconds=5), now + timedelta(seconds=60)
    specs = {
        "pending, due": (dict(status="pending", available_at=past), True, "keep"),
        "pending, backing off": (dict(status="pending", available_at=future), False, "keep"),
        "running, lease expired, attempts left": (dict(status="running", lease_expires_at=past, attempts=1), True,
                                                  "requeue"),
        "running, lease live": (dict(status="running", lease_expires_at=future, attempts=1), False, "keep"),
        "running, lease expired, last attempt": (dict(status="running", lease_expires_at=past, attempts=5,
                                                      max_attempts=5), False, "fail"),
        "running, lease live, holder's backend gone": (dict(
            status="running", lease_expires_at=future, attempts=1, lease_backend_pid=dead_pid,
            lease_backend_started=dead_started), True, "requeue"),
        "running, lease live, holder's backend alive": (dict(
            status="running", lease_expires_at=future, attempts=1, lease_backend_pid=live_pid,
            lease_backend_started=live_started), False, "keep"),
        "running, lease live, pid reused by another backend": (dict(
            status="running", lease_expires_at=future, attempts=1, lease_backend_pid=live_pid,
            lease_backend_started=live_started - timedelta(hours=1)), True, "requeue"),
        "running, holder gone, last attempt": (dict(
            status="running", lease_expires_at=future, attempts=5, max_attempts=5, lease_backend_pid=dead_pid,
            lease_backend_started=dead_started), False, "fail"),
        "succeeded": (dict(status="succeeded"), False, "keep"),
    }
    cases = {}
    for name, (fields, claimable, reaped) in specs.items():
        job = make_job(status="running")
        cases[name] = (make_partition(job, **fields), claimable, reaped)
    return cases


def test_every_user_of_the_claimable_predicate_agrees_on_rows_either_side_of_each_condition(db):
    cases = _cases()
    expected_claimable = {name for name, (_, claimable, _) in cases.items() if claimable}

    assert claiming.claimable_slots() == len(expected_claimable)
    listed = set(claiming.jobs_with_claimable_work())
    waits = {name: claiming.seconds_until_claimable(p.job_id) for name, (p, _, _) in cases.items()}
    for name, (partition, claimable, _) in cases.items():
        assert (partition.job_id in listed) == claimable, name
        wait = waits[name]
        if claimable:
            assert wait is not None and wait <= 0, name
        elif name in {"pending, backing off", "running, lease live", "running, lease live, holder's backend alive"}:
            assert wait is not None and wait > 0, name
        else:  # never claimable without help: the drain must not wait for it
            assert wait is None, name

    # The console's live-lease count (progress, workers view, /metrics) uses the same rule.
    live = set(Partition.objects.filter(claiming.live_lease_q()).values_list("pk", flat=True))
    assert {name for name, (p, _, _) in cases.items() if p.pk in live} == {
        "running, lease live", "running, lease live, holder's backend alive"}
    progress = jobs_progress([p.job_id for p, _, _ in cases.values()])
    assert sum(row.live_leases for row in progress.values()) == 2

    claimed = {name for name, (p, _, _) in cases.items()
               if claiming.partition_claim(worker_id="probe", lease_seconds=60, job_id=p.job_id)}
    assert claimed == expected_claimable


def test_the_reaper_uses_the_same_lapsed_lease_rule_and_leaves_live_leases_alone(db):
    cases = _cases()
    claiming.partitions_reap_expired()
    for name, (partition, _, reaped) in cases.items():
        before = partition.status
        partition.refresh_from_db()
        expected = {"keep": before, "requeue": "pending", "fail": "failed"}[reaped]
        assert partition.status == expected, name


def test_a_claim_records_the_claiming_backend_and_its_start(db):
    job = make_job(status="running")
    make_partition(job)
    [claimed] = claiming.partition_claim(worker_id="me", lease_seconds=60, job_id=job.pk)
    assert (claimed.lease_backend_pid, claimed.lease_backend_started) == _backend()


def test_without_dead_backend_detection_a_claim_records_no_backend(db, settings):
    settings.PARTITIONS_DETECT_DEAD_BACKENDS = False
    job = make_job(status="running")
    make_partition(job)
    [claimed] = claiming.partition_claim(worker_id="me", lease_seconds=60, job_id=job.pk)
    assert (claimed.lease_backend_pid, claimed.lease_backend_started) == (None, None)


def test_a_drain_facing_only_a_lease_on_its_last_attempt_returns_without_polling(db):
    job = make_job(status="running")
    make_partition(job, status="running", lease_expires_at=timezone.now() - timedelta(seconds=1),
                   attempts=5, max_attempts=5)
    with CaptureQueriesContext(connection) as queries:
        report = worker.drain(budget_seconds=2, job_id=job.pk, worker="w")
    assert report.partitions == 0
    claims = [q for q in queries.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    assert len(claims) <= 1 and len(queries.captured_queries) <= 6


def _claim_n(n: int) -> list[int]:
    return [p.job_id for _ in range(n) for p in claiming.partition_claim(worker_id="w", lease_seconds=60)]


def test_a_higher_priority_job_gets_the_next_free_worker(db):
    low = make_job(status="running", priority=0)
    for seq in range(5):
        make_partition(low, seq=seq)
    assert _claim_n(2) == [low.pk, low.pk]
    high = make_job(status="running", priority=10)
    for seq in range(3):
        make_partition(high, seq=seq)
    assert _claim_n(4) == [high.pk, high.pk, high.pk, low.pk]


def test_jobs_of_equal_priority_share_the_fleet(db):
    older, newer = make_job(status="running"), make_job(status="running")
    for job in (older, newer):
        for seq in range(6):
            make_partition(job, seq=seq)
    claimed = _claim_n(8)
    assert claimed.count(older.pk) == claimed.count(newer.pk) == 4
    assert JobEvent.objects.filter(type="partition_claimed").count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_standby_that_claims_work_hands_the_watch_to_another_drain(settings, recorder):
    from tests.support import planned_job, seed

    settings.PARTITIONS_LEASE_SECONDS = 2
    seed(subscriptions=50)
    job = planned_job("tests.probe_standby", {"partitions": 1})
    # Held by someone alive whose lease runs out in 1.5 s: the drain stands by, then claims it.
    move(Partition.objects.get(job=job), "running", lease_owner="other",
         lease_expires_at=timezone.now() + timedelta(seconds=1.5))
    report = worker.drain(budget_seconds=10, job_id=job.pk, worker="w")
    assert report.outcomes == {"succeeded": 1}
    assert recorder.standby_free_while_running and all(recorder.standby_free_while_running)
