"""A lost NOTIFY only delays work, never loses it: real qclusters waiting on LISTEN get work whose notification
never came (enqueued by django-q2's own broker), work started while their LISTEN connection was dropped, and
work started after a PostgreSQL restart."""

import os

import pytest
from django.db import connection, connections
from django_q.brokers.orm import ORM
from django_q.tasks import async_task

from opsapp import devdb
from partitions.engine import dispatch, wakeups
from partitions.models import Job
from partitions.operations import services
from tests import jobtypes  # noqa: F401 - registers tests.sleepy here too
from tests.support import finished, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: The safety net of these clusters: short, so a lost notification costs the test seconds, not minutes.
SAFETY = "2"
JOB = ("tests.sleepy", {"partitions": 4, "sleep_ms": 20})


def listeners() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                       [wakeups.APPLICATION_NAME])
        return {pid for (pid,) in cursor.fetchall()}


def listening_cluster(clusters):
    started = clusters(1, PARTITIONS_WAKEUPS="listen", PARTITIONS_WAKEUP_SAFETY_SECONDS=SAFETY)
    wait_for(lambda: len(listeners()) == 1, timeout=60, what="the cluster to LISTEN", clusters=started)
    return started


def test_a_job_whose_notification_never_came_is_planned_and_run_by_the_safety_net(clusters):
    fleet = listening_cluster(clusters)
    previous = dispatch.current()
    dispatch.set_dispatcher(None)  # start the job without enqueueing its plan
    try:
        job, _ = services.job_start(*JOB, actor="test")
    finally:
        dispatch.set_dispatcher(previous)
    async_task("partitions.tasks.plan", job.pk, broker=ORM())  # django-q2's broker: a row, and no NOTIFY
    job = finished(job, fleet, timeout=60)
    assert job.status == "succeeded", job.error
    assert job.partitions.filter(status="succeeded").count() == 4


def test_work_started_while_the_listen_connection_was_dropped_runs_and_the_cluster_listens_again(clusters):
    fleet = listening_cluster(clusters)
    (first,) = listeners()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    job, _ = services.job_start(*JOB, actor="test")  # its NOTIFY may reach nobody
    job = finished(job, fleet, timeout=60)
    assert job.status == "succeeded", job.error
    wait_for(lambda: len(listeners() - {first}) == 1, timeout=30, what="a new LISTEN connection", clusters=fleet)
    again, _ = services.job_start(*JOB, actor="test", dedupe_key="again")
    assert finished(again, fleet, timeout=60).status == "succeeded"


@pytest.mark.serial
@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="restarts the embedded PostgreSQL only")
def test_after_a_postgresql_restart_the_cluster_listens_again_and_runs_new_work(clusters):
    fleet = listening_cluster(clusters)
    connections.close_all()
    devdb.stop()
    devdb.start()
    connections.close_all()
    wait_for(lambda: len(listeners()) == 1, timeout=60, what="the cluster to LISTEN again", clusters=fleet)
    job, _ = services.job_start(*JOB, actor="test")
    job = finished(job, fleet, timeout=90)
    assert job.status == "succeeded", job.error
    assert Job.objects.filter(status="succeeded").count() == 1
