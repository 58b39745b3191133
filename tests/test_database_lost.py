"""The one classification of a lost database (`partitions.engine.failover`), on real PostgreSQL errors: a server
that refuses writes (25006) or a connection that is gone means "drop it and reconnect"; a statement timeout, a
constraint or a bug does not. And each reaction: a task reconnects and ticks, gunicorn's request drops it, a run
whose connection was replaced writes nothing more under its lease, a plan step is not failed by it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection
from django.test import RequestFactory
from django_q.models import OrmQ

from opsapp.billing.models import Subscription
from opsapp.middleware import DropLostDatabase
from partitions import tasks
from partitions.engine import claiming, failover
from partitions.models import Partition
from partitions.worker import steps
from partitions.worker.run import run_partition
from tests.jobtypes import ReconnectsMidRun
from tests.support import planned_job, seed, started_job


def raised(sql: str, *, session: str = "") -> DatabaseError:
    """The error Django raises for `sql` (after the session statement `session`), as a worker would see it."""
    with connection.cursor() as cursor:
        if session:
            cursor.execute(session)
        try:
            cursor.execute(sql)
        except DatabaseError as exc:
            return exc
    raise AssertionError(f"{sql} did not fail")


@pytest.mark.django_db(transaction=True)
def test_a_write_refused_as_read_only_is_a_lost_database_and_a_timeout_is_not():
    read_only = raised("CREATE TEMP TABLE t (i int)", session="SET SESSION default_transaction_read_only = on")
    connection.close()
    assert read_only.__cause__.sqlstate == failover.READ_ONLY
    assert failover.database_lost(read_only)
    timeout = raised("SELECT pg_sleep(1)", session="SET statement_timeout = 10")
    assert timeout.__cause__.sqlstate == "57014"  # an OperationalError too, of a server that is fine
    assert not failover.database_lost(timeout)
    connection.close()
    assert not failover.database_lost(raised("SELECT 1/0"))
    assert not failover.database_lost(IntegrityError("duplicate key"))
    assert not failover.database_lost(ValueError("a bug"))


@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_under_a_worker_is_a_lost_database_even_when_raised_during_another_error():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    gone = raised("SELECT 1")
    connection.close()  # as the worker's task wrapper does
    assert failover.database_lost(gone)
    try:
        try:
            raise gone
        except DatabaseError:
            raise RuntimeError("cleanup failed") from None  # context suppressed for display, still chained
    except RuntimeError as during:
        assert failover.database_lost(during)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(host="/nonexistent-socket-folder", dbname="x", connect_timeout=2)
    assert failover.database_lost(refused.value)


@pytest.mark.django_db(transaction=True)
def test_a_task_on_a_read_only_connection_drops_it_reconnects_and_asks_for_a_tick():
    with connection.cursor() as cursor:  # what a server that became a standby looks like to the session
        cursor.execute("SET SESSION default_transaction_read_only = on")
    stale = connection.connection
    report = tasks.tick()
    assert "read-only transaction" in report["database_lost"] and report["reconnected"] is True
    assert [task.func() for task in OrmQ.objects.all()] == [tasks.TICK]  # in the broker, for any cluster
    assert connection.connection is not stale
    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_read_only")
        assert cursor.fetchone() == ("off",)


@pytest.mark.django_db(transaction=True)
def test_a_request_that_failed_on_a_read_only_server_drops_the_connection():
    error = raised("CREATE TEMP TABLE t (i int)", session="SET SESSION default_transaction_read_only = on")
    assert connection.connection is not None
    DropLostDatabase(lambda request: None).process_exception(RequestFactory().get("/admin/"), error)
    assert connection.connection is None
    DropLostDatabase(lambda request: None).process_exception(RequestFactory().get("/admin/"), ValueError("bug"))
    with connection.cursor() as cursor:  # connects again, writable
        cursor.execute("SHOW transaction_read_only")
        assert cursor.fetchone() == ("off",)


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_connection_was_replaced_writes_nothing_more_under_its_lease(no_dispatcher):
    seed(subscriptions=100)
    job = planned_job("tests.reconnects_mid_run", {"partitions": 1})
    [claimed] = claiming.partition_claim(worker_id="w", lease_seconds=60, job_id=job.pk)
    outcome = run_partition(claimed, worker_id="w")
    assert outcome.kind == "lease_lost"  # nothing to record: the new session may reach a new primary
    partition = Partition.objects.get(pk=claimed.pk)
    assert (partition.status, partition.lease_token, partition.checkpoint, partition.done_items) == (
        "running", claimed.lease_token, None, 0), "no checkpoint went through the new session"
    # Its effect (not atomic with the checkpoint: at least once) is redone by the next holder, from the checkpoint.
    assert Subscription.objects.filter(product_version=2).count() == ReconnectsMidRun.batch_size


@pytest.mark.django_db(transaction=True)
def test_a_plan_step_that_lost_its_database_is_not_the_job_s_failure(no_dispatcher):
    job = started_job("tests.plans_on_a_standby", {"partitions": 1})
    with pytest.raises(DatabaseError):
        steps.job_plan(job.pk, worker_id="planner")
    connection.close()  # as the task around it does
    job.refresh_from_db()
    assert (job.status, job.error) == ("planning", ""), "left for its step lease to lapse and tick to plan it again"
