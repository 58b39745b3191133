"""Wake-ups (partitions.engine.wakeups, tasks.WakeupBroker) on the real PostgreSQL, without a qcluster: an enqueue
wakes a listening pusher, a schedule change makes it re-read the next fire, a dropped LISTEN connection makes it look at
once and reconnect, the safety net looks without any notification, and poll mode never opens a LISTEN session."""

import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django_q.brokers.orm import ORM
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from partitions import tasks
from partitions.engine import claiming, wakeups
from partitions.engine.sql import queries
from partitions.models import JobSchedule

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "opsapp"


@pytest.fixture
def waiter(settings):
    settings.PARTITIONS_WAKEUPS = "listen"
    settings.PARTITIONS_WAKEUP_SAFETY_SECONDS = 600.0  # no safety-net look gets in the way of what is tested
    made = wakeups.Waiter(list_key=KEY, poll_seconds=0.05)
    yield made
    made.close()


def wait_until(waiter: wakeups.Waiter, what: str, *, slices: int = 5) -> wakeups.Due:
    """The first `wait()` (each at most a slice) where `what` is due; fails after `slices` slices."""
    for _ in range(slices):
        due = waiter.wait()
        if getattr(due, what):
            return due
    raise AssertionError(f"{what} never came due")


def settled(waiter: wakeups.Waiter) -> None:
    """Past the start-up look (and the first read of the next fire), with an empty queue."""
    assert waiter.wait().queue  # a pusher looks once when it starts, before anything notified it
    waiter.looked(found=False)


def listener_pids() -> list[int]:
    with connection.cursor() as cursor:
        # This database's only: another test run may share the server (TEST_DATABASE_NAME).
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                       [wakeups.APPLICATION_NAME])
        return [pid for (pid,) in cursor.fetchall()]


def test_an_enqueue_wakes_a_listening_pusher_and_the_task_is_taken_once(waiter):
    settled(waiter)
    assert waiter.wait() == wakeups.Due()  # nothing notified: a slice passes with nothing due
    broker = tasks.WakeupBroker(list_key=KEY)
    task_id = broker.enqueue(SignedPackage.dumps({"id": "t1", "func": "math.floor", "args": (1.5,), "kwargs": {}}))
    assert wait_until(waiter, "queue").queue
    assert waiter.wakeups == 1
    broker._waiter = waiter
    taken = broker.dequeue()
    assert [pk for pk, _ in taken] == [task_id]
    assert SignedPackage.loads(taken[0][1])["func"] == "math.floor"
    lock = OrmQ.objects.get(pk=task_id).lock
    assert lock > claiming.db_now() + timedelta(seconds=60)  # invisible to other pushers for django-q2's retry
    assert broker.dequeue() is None  # found one, so it looked again at once: now the queue is empty
    assert OrmQ.objects.filter(pk=task_id).exists()  # taken, not acknowledged


def test_a_notification_for_another_queue_does_not_make_this_pusher_look(waiter):
    settled(waiter)
    tasks.WakeupBroker(list_key="other-cluster").enqueue("payload")
    assert waiter.wait() == wakeups.Due()
    assert waiter.wakeups == 1  # heard, and ignored


def test_without_any_notification_the_safety_net_looks(settings, waiter):
    settled(waiter)
    settings.PARTITIONS_WAKEUP_SAFETY_SECONDS = 0.2
    waiter.safety = 0.2
    waiter.looked(found=False)
    ORM(list_key=KEY).enqueue("a task whose NOTIFY was lost")  # django-q2's broker: no NOTIFY
    assert wait_until(waiter, "queue").queue
    assert waiter.wakeups == 0


def test_a_dropped_listen_connection_makes_the_pusher_look_at_once_and_listen_again(waiter):
    settled(waiter)
    (first,) = listener_pids()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    assert wait_until(waiter, "queue").queue  # what was notified while nobody listened: looked for now
    waiter.looked(found=False)
    assert wait_until(waiter, "queue").queue  # reconnected (after a short backoff), and looked again
    waiter.looked(found=False)
    (second,) = listener_pids()
    assert second != first
    tasks.WakeupBroker(list_key=KEY).enqueue("payload")
    assert wait_until(waiter, "queue").queue  # the new connection hears enqueues again


def test_a_schedule_written_by_any_path_makes_the_pusher_fire_it_when_due(waiter):
    settled(waiter)
    assert waiter.wait() == wakeups.Due()  # no schedule: nothing to fire
    now = claiming.db_now()
    JobSchedule.objects.create(name="soon", type_name="tests.noop", params={}, kind="minutes", every=60,
                               anchor=now, next_run_at=now + timedelta(seconds=1.5))
    assert wait_until(waiter, "schedules").schedules  # the trigger told it; it slept until the fire time
    assert waiter.wait() == wakeups.Due()  # asked once, not again every slice


def test_a_paused_schedule_is_not_fired(waiter):
    now = claiming.db_now()
    schedule = JobSchedule.objects.create(name="later", type_name="tests.noop", params={}, kind="minutes",
                                          every=60, anchor=now, next_run_at=now + timedelta(seconds=1))
    settled(waiter)
    JobSchedule.objects.filter(pk=schedule.pk).update(enabled=False)
    for _ in range(3):
        assert not waiter.wait().schedules


def test_poll_mode_opens_no_listen_connection_and_looks_every_poll(settings):
    settings.PARTITIONS_WAKEUPS = "poll"
    waiter = wakeups.Waiter(list_key=KEY, poll_seconds=0.05)
    settled(waiter)
    assert wait_until(waiter, "queue").queue
    assert listener_pids() == []


def test_the_schedule_query_reads_the_earliest_enabled_fire_on_the_database_clock():
    assert wakeups.schedules_next_fire_in() is None
    now = claiming.db_now()
    for name, ahead, enabled in [("a", 30, True), ("b", 10, False), ("c", 20, True)]:
        JobSchedule.objects.create(name=name, type_name="tests.noop", params={}, kind="minutes", every=60,
                                   anchor=now, next_run_at=now + timedelta(seconds=ahead), enabled=enabled)
    assert 18 < wakeups.schedules_next_fire_in() <= 20


@pytest.mark.parametrize("mode, level", [("listen", logging.INFO), ("poll", logging.WARNING)])
def test_a_pusher_says_at_start_how_it_wakes_and_polling_warns_of_its_cost(settings, mode, level):
    settings.PARTITIONS_WAKEUPS = mode
    logged, message = wakeups.startup_message(0.2)
    assert logged == level
    assert ("transactions/s" in message) == (mode == "poll")


def test_cluster_stats_are_written_when_they_change_and_else_at_most_every_interval(settings):
    settings.PARTITIONS_CLUSTER_STATS_SECONDS = 600.0
    broker = tasks.WakeupBroker(list_key=KEY)
    key = Stat.get_key("c1")

    def save(status: str, queued: int) -> None:
        stat = Status(pid=1, cluster_id="c1")
        stat.status, stat.workers, stat.task_q_size = status, [11, 12], queued
        broker.set_stat(key, SignedPackage.dumps(stat), 3)

    def stored() -> tuple[str, int]:
        stat = SignedPackage.loads(broker.get_stat(key))
        return stat.status, stat.task_q_size

    save("Starting", 0)
    assert stored() == ("Starting", 0)
    save("Idle", 1)
    assert stored() == ("Idle", 1)  # a status change: written at once
    save("Idle", 2)
    assert stored() == ("Idle", 1)  # the same state inside the interval: not written
    save("Working", 3)
    assert stored() == ("Working", 3)
    settings.PARTITIONS_CLUSTER_STATS_SECONDS = 0.0
    save("Working", 4)
    assert stored() == ("Working", 4)  # the interval passed: the heartbeat is written again


def test_the_wakeup_statements_are_in_the_registry():
    assert "pg_notify('partitions_work'" in queries["task_enqueue_notify"]
    assert "SKIP LOCKED" in queries["task_take"]


@pytest.mark.slow  # starts manage.py check
@pytest.mark.parametrize("value", ["LISTEN", "notify", "", "pgbouncer"])
def test_a_wrong_wakeup_mode_is_one_clear_error_at_startup(value):
    run = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True,
                         env={**os.environ, "PARTITIONS_WAKEUPS": value}, timeout=60)
    assert run.returncode != 0
    assert f"PARTITIONS_WAKEUPS must be 'listen' or 'poll', not {value!r}." in run.stderr
