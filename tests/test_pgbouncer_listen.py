"""The PgBouncer end-to-end suite again in the other wake-up mode: every qcluster's traffic goes through a real
PgBouncer in transaction mode, except its one LISTEN connection, which goes straight to PostgreSQL
(PARTITIONS_WAKEUP_LISTEN_URL); test_workers.py's `pooled` runs poll (the default behind a pooler)."""

import pytest
from django.db import connection

from opsapp import pgbouncer
from partitions.engine import wakeups
from tests import test_workers

pytestmark = test_workers.pytestmark

db_url = test_workers.db_url


@pytest.fixture
def bouncer(django_db_setup):
    """A running PgBouncer in front of the test database."""
    if not pgbouncer.available():
        pytest.skip(f"{pgbouncer.BINARY} is not installed (`make test` installs Debian's pgbouncer as root)")
    running = pgbouncer.PgBouncer(connection.settings_dict, pool_size=test_workers.POOL_SIZE)
    yield running
    running.stop()


@pytest.fixture
def clusters(clusters, bouncer):
    """The pooled clusters, woken through a direct LISTEN connection; asserts they listened and used PgBouncer
    (checked before the clusters stop: this teardown runs first)."""
    from opsapp.bench.qclusters import database_url

    direct = database_url(connection.settings_dict)
    before = bouncer.transactions(connection.settings_dict["NAME"])
    yield lambda n=1, **env: clusters(n, DATABASE_POOLING="transaction", PARTITIONS_WAKEUP_LISTEN_URL=direct, **env)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
                       [wakeups.APPLICATION_NAME, connection.settings_dict["NAME"]])
        assert cursor.fetchone()[0] >= 1, "the clusters listened straight to PostgreSQL"
    assert bouncer.transactions(connection.settings_dict["NAME"]) > before + 100, "the clusters used PgBouncer"


test_migrate_subscriptions_listening_past_pgbouncer = (
    test_workers.test_migrate_subscriptions_completes_under_two_clusters_and_migrates_every_row_once)
test_sigkill_mid_job_listening_past_pgbouncer = (
    test_workers.test_a_cluster_killed_with_sigkill_mid_job_loses_nothing_and_repeats_nothing)
test_stop_all_and_resume_listening_past_pgbouncer = (
    test_workers.test_stopping_every_cluster_mid_job_and_starting_one_later_resumes_through_tick)
