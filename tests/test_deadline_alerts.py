"""Deadline-at-risk alerts: the episode rules on an injected clock (grace, one alert per episode, hysteresis,
recovery, a new episode), each reading of the projection, and the tick duty on real rows: watches placed just
either side of the grace, one event under concurrent ticks, an ended job ends its episode, the relay's
notifications; end to end, a throttled job under a real qcluster gets exactly one alert at a real webhook."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from partitions.models import Delivery, Job, JobEvent
from partitions.notify import relay
from partitions.operations import deadline_alerts, services
from partitions.operations.deadline_alerts import AT_RISK, RECOVERED, WATCH_KEY, Reading, Watch, reading, step, watch_of
from partitions.reads.projection import HEALTH, PAUSED, RATE_LIMIT, Projection
from partitions.worker import maintenance
from tests.factories import make_job, make_partition

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
GRACE = 60.0
L, C, B, N, U = Reading.LATE, Reading.CLEAR, Reading.BAND, Reading.NEUTRAL, Reading.UNKNOWN


def alerts_of(readings: list[tuple[float, Reading]], grace: float = GRACE) -> list[tuple[float, str]]:
    """(second, alert) of every alert a sequence of (second, reading) makes, from a fresh watch."""
    watch, made = Watch(), []
    for second, seen in readings:
        watch, alert = step(watch, seen, T0 + timedelta(seconds=second), grace)
        if alert:
            made.append((second, alert))
    return made


def every(seconds: float, until: float, seen: Reading, start: float = 0) -> list[tuple[float, Reading]]:
    return [(start + i * seconds, seen) for i in range(int((until - start) // seconds) + 1)]


# The episode rules --------------------------------------------------------------------------------------------

def test_late_for_less_than_the_grace_alerts_nobody():
    assert alerts_of(every(10, 59, L)) == []


def test_late_for_the_grace_alerts_once_and_staying_late_alerts_no_more():
    assert alerts_of(every(10, 600, L)) == [(60, AT_RISK)]


def test_a_break_in_the_late_readings_restarts_the_grace():
    readings = [*every(10, 50, L), (55, B), *every(10, 130, L, start=60)]
    assert alerts_of(readings) == [(60 + 60, AT_RISK)]


def test_flapping_inside_the_hysteresis_band_makes_no_second_alert_and_no_recovery():
    flapping = [(60 + 10 * i, B if i % 2 else L) for i in range(60)]
    assert alerts_of(every(10, 60, L) + flapping) == [(60, AT_RISK)]


def test_back_on_time_with_the_margin_for_the_grace_recovers_once_then_late_again_is_a_new_episode():
    readings = every(10, 60, L) + every(10, 300, C, start=70) + every(10, 500, L, start=310)
    assert alerts_of(readings) == [(60, AT_RISK), (130, RECOVERED), (370, AT_RISK)]


def test_a_recovery_interrupted_before_the_grace_is_none():
    readings = every(10, 60, L) + every(10, 110, C, start=70) + [(115, B)] + every(10, 170, C, start=120)
    assert alerts_of(readings) == [(60, AT_RISK)]
    assert alerts_of([*readings, (180, C)]) == [(60, AT_RISK), (180, RECOVERED)]


def test_an_unknown_reading_neither_breaks_nor_makes_an_episode_and_a_pause_breaks_the_grace():
    assert alerts_of([(0, L), (30, U), (60, L)]) == [(60, AT_RISK)]
    assert alerts_of(every(10, 300, U)) == []
    assert alerts_of([(0, L), (30, N), (60, L), (110, L)]) == []
    assert alerts_of([(0, L), (30, N), (60, L), (120, L)]) == [(120, AT_RISK)]


def test_the_watch_belongs_to_one_attempt():
    kept = {WATCH_KEY: {"attempt": 1, "at_risk": True, "since": T0.isoformat()}}
    assert watch_of(kept, 1) == Watch(1, True, T0)
    assert watch_of(kept, 2) == Watch(2)  # a retry starts afresh
    assert watch_of({}, 1) == Watch(1) == watch_of({WATCH_KEY: "garbage"}, 1)


# One reading of the projection --------------------------------------------------------------------------------

DEADLINE = T0 + timedelta(minutes=20)


@pytest.mark.parametrize(("projection", "expected"), [
    (Projection(meets_deadline=False, effective_rate=2.0, projected_finish=DEADLINE + timedelta(1)), L),
    (Projection(limited_by=HEALTH, held="replication lag", effective_rate=0.0), L),  # a hold: nothing moves
    (Projection(meets_deadline=None, effective_rate=0.0, limited_by=RATE_LIMIT), L),  # no free worker
    (Projection(limited_by=PAUSED, effective_rate=0.0), N),  # an operator's pause is no risk
    (Projection(meets_deadline=None, rate_source="measuring"), U),
    # 20 minutes left: the margin is max(5% = 60 s, 30 s)
    (Projection(meets_deadline=True, projected_finish=DEADLINE - timedelta(seconds=60)), C),
    (Projection(meets_deadline=True, projected_finish=DEADLINE - timedelta(seconds=59)), B),
])
def test_each_reading_of_the_projection(projection, expected):
    assert reading(projection, DEADLINE, T0) == expected


def test_the_margin_is_at_least_thirty_seconds_when_little_time_is_left():
    deadline = T0 + timedelta(seconds=100)
    on_time = [reading(Projection(meets_deadline=True, projected_finish=deadline - timedelta(seconds=s)),
                       deadline, T0) for s in (29, 30)]
    assert on_time == [B, C]


# The tick duty on real rows -----------------------------------------------------------------------------------

def db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def late_job(**fields) -> Job:
    """~1 item/s with 99,400 items left and a minute to the deadline: projected ~28 h late."""
    now = db_now()
    job = make_job(deadline=now + timedelta(minutes=1), planned_at=now - timedelta(minutes=10), **fields)
    make_partition(job, estimated_items=100_000, done_items=600)
    return job


def seen_since(job: Job, seconds_ago: float) -> None:
    """Move the watch's `since` back: the readings began that long ago (the test's clock stands still)."""
    job.refresh_from_db()
    kept = job.stats[WATCH_KEY]
    since = db_now() - timedelta(seconds=seconds_ago)
    Job.objects.filter(pk=job.pk).update(stats={**job.stats, WATCH_KEY: {**kept, "since": since.isoformat()}})


def events(job: Job, kind: str) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, type=kind))


@pytest.mark.django_db
def test_a_job_projected_late_for_the_grace_gets_one_event_then_no_more():
    job, on_time = late_job(), make_job(deadline=db_now() + timedelta(days=1), planned_at=db_now())
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    seen_since(job, 59.9)
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    seen_since(job, 60.1)
    assert maintenance.alert_deadlines() == {AT_RISK: 1, RECOVERED: 0}
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    [alert] = events(job, AT_RISK)
    assert alert.actor == "system" and alert.data["items_remaining"] == 99_400
    assert alert.data["projected_finish"] > alert.data["deadline"]
    assert "vs deadline" in alert.data["projection"] and "late" in alert.data["projection"]
    assert events(on_time, AT_RISK) == [] and WATCH_KEY not in Job.objects.get(pk=on_time.pk).stats


@pytest.mark.django_db
def test_back_on_time_for_the_grace_is_one_recovery_and_the_relay_notifies_both(settings):
    settings.PARTITIONS_NOTIFY = {"webhooks": {"ops": {"url": "https://hooks.example.com/x", "secret": "s"}}}
    job = late_job()
    maintenance.alert_deadlines()
    seen_since(job, 61)
    assert maintenance.alert_deadlines()[AT_RISK] == 1
    Job.objects.filter(pk=job.pk).update(deadline=db_now() + timedelta(days=30))
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    seen_since(job, 61)
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 1}
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    [recovered] = events(job, RECOVERED)
    assert recovered.data["projected_finish"] < recovered.data["deadline"]

    relay.notifications_relay()
    deliveries = Delivery.objects.filter(job=job).order_by("id")
    assert [(d.kind, d.channel) for d in deliveries] == [(AT_RISK, "webhook:ops"), (RECOVERED, "webhook:ops")]
    assert deliveries[0].payload["data"]["projection"] == events(job, AT_RISK)[0].data["projection"]


@pytest.mark.django_db
def test_a_paused_job_is_not_alerted_and_its_pause_breaks_the_grace():
    job = late_job()
    maintenance.alert_deadlines()
    services.job_pause(job.pk, actor="test")
    seen_since(job, 600)
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    job.refresh_from_db()
    assert job.stats[WATCH_KEY]["since"] is None and events(job, AT_RISK) == []


@pytest.mark.django_db
def test_an_ended_job_ends_its_episode_without_a_recovery():
    job = late_job()
    maintenance.alert_deadlines()
    seen_since(job, 61)
    assert maintenance.alert_deadlines()[AT_RISK] == 1
    services.job_cancel(job.pk, actor="test", reason="too late anyway")
    assert maintenance.alert_deadlines() == {AT_RISK: 0, RECOVERED: 0}
    assert events(job, RECOVERED) == []


@pytest.mark.django_db
def test_finalize_drops_the_watch_from_the_final_stats():
    job = make_job(deadline=db_now() + timedelta(hours=1))
    make_partition(job, status="succeeded", estimated_items=10, done_items=10)
    Job.objects.filter(pk=job.pk).update(stats={"prepare": {"x": 1}, WATCH_KEY: {"attempt": 0, "at_risk": True}})
    assert maintenance.finalize_finished_jobs() == {"finalized": 1}
    job.refresh_from_db()
    assert job.status == "succeeded" and WATCH_KEY not in job.stats and job.stats["prepare"] == {"x": 1}


@pytest.mark.django_db
def test_a_grace_of_zero_turns_the_alerts_off_and_writes_nothing(settings):
    settings.PARTITIONS_DEADLINE_GRACE_SECONDS = 0
    job = late_job()
    assert deadline_alerts.deadline_alerts_check() == {AT_RISK: 0, RECOVERED: 0}
    assert WATCH_KEY not in Job.objects.get(pk=job.pk).stats


def _tick_at_once(barrier) -> dict[str, int]:
    barrier.wait()
    return maintenance.alert_deadlines()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ticks_on_several_hosts_at_once_alert_once(children):
    job = late_job()
    maintenance.alert_deadlines()
    seen_since(job, 61)
    reports = children.race(_tick_at_once, lambda i: (), 4, "tick")
    assert sum(report[AT_RISK] for report in reports) == 1
    assert len(events(job, AT_RISK)) == 1


# End to end ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_throttled_job_under_a_real_cluster_gets_exactly_one_alert_at_a_real_webhook(clusters, settings):
    from tests.support import started_job, wait_for
    from tests.test_notifications import SECRET, Receiver, verify

    hook = Receiver()
    hook.initial_failures = 0
    try:
        notify = json.dumps({"allow_http": True, "webhooks": {"ops": {"url": hook.url, "secret": SECRET}},
                             "events": [AT_RISK, RECOVERED]})
        env = {"PARTITIONS_NOTIFY": notify, "PARTITIONS_DEADLINE_GRACE_SECONDS": "3"}
        [cluster] = clusters(1, **env)
        settings.PARTITIONS_NOTIFY = json.loads(notify)
        settings.PARTITIONS_DEADLINE_GRACE_SECONDS = 3.0
        # 2 items/s allowed, 400 items: ~200 s of work against a deadline in 60 s.
        job = started_job("tests.items_serial", {"count": 400, "chunk_size": 20}, rate_limit=2.0,
                          deadline=db_now() + timedelta(seconds=60), max_parallel=2)

        def alerted() -> bool:
            # Tick's two duties, in this process as often as the test likes (the cluster ticks too, at its start
            # and each minute: the row lock makes either one's alert the only one).
            maintenance.alert_deadlines()
            maintenance.relay_notifications()
            return bool(hook.requests)

        wait_for(alerted, timeout=60, what="the deadline_at_risk webhook", clusters=[cluster])
        looked_until = time.monotonic() + 3 * 3.0
        while time.monotonic() < looked_until:  # it stays late for three graces more: more looks, no more alerts
            maintenance.alert_deadlines()
            maintenance.relay_notifications()
            time.sleep(0.3)
        wait_for(lambda: not Delivery.objects.filter(job=job, status="pending").exists(), timeout=30,
                 what="the deliveries to settle", clusters=[cluster])

        [alert] = events(job, AT_RISK)
        assert alert.data["limited_by"] == RATE_LIMIT and alert.data["rate_needed"] is not None
        assert "limited by the rate limit of 2.0 items/s" in alert.data["limit"]
        assert "a rate limit of" in alert.data["advice"]
        assert [(d.kind, d.status) for d in Delivery.objects.filter(job=job, kind=AT_RISK)] == [(AT_RISK, "sent")]
        [request] = hook.requests
        assert request["headers"]["X-Partitions-Event"] == AT_RISK
        assert verify(request) and json.loads(request["body"])["data"]["projection"] == alert.data["projection"]
        services.job_cancel(job.pk, actor="test", reason="the test has seen its alert")
    finally:
        hook.close()
