"""The worker end-to-end suite again, with every qcluster behind a real PgBouncer in transaction-pooling mode.

Fewer server connections than clients, so workers, renewers, pushers and item threads share backends from
one transaction to the next: a session setting, a WITH HOLD cursor, a prepared statement or a session
advisory lock would break here. The clusters run with DATABASE_POOLING=transaction (no server-side cursors,
no dead-backend detection: a killed cluster's partitions come back when their lease expires).
"""

import pytest

from opsapp import pgbouncer
from tests import test_workers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(not pgbouncer.available(),
                       reason=f"{pgbouncer.BINARY} is not installed (`make test` installs Debian's pgbouncer as root)"),
]

#: Server connections per database: far fewer than the ~14 clients of two clusters.
POOL_SIZE = 4


@pytest.fixture
def bouncer(django_db_setup):
    from django.db import connection

    running = pgbouncer.PgBouncer(connection.settings_dict, pool_size=POOL_SIZE)
    yield running
    running.stop()


@pytest.fixture
def db_url(bouncer):
    """The test database through the pooler: what `clusters` hands its qclusters."""
    from django.db import connection

    return bouncer.url(connection.settings_dict["NAME"])


@pytest.fixture
def clusters(clusters, bouncer):
    """The suite's clusters, configured for a transaction pooler; asserts their traffic went through it."""
    from django.db import connection

    before = bouncer.transactions(connection.settings_dict["NAME"])
    yield lambda n=1, **env: clusters(n, DATABASE_POOLING="transaction", **env)
    assert bouncer.transactions(connection.settings_dict["NAME"]) > before + 100, "the clusters used PgBouncer"


test_migrate_subscriptions_through_pgbouncer = (
    test_workers.test_migrate_subscriptions_completes_under_two_clusters_and_migrates_every_row_once)
test_dispatch_events_through_pgbouncer = test_workers.test_dispatch_events_sends_every_event_exactly_once_after_its_ack
test_send_invoices_through_pgbouncer = (
    test_workers.test_send_invoices_mails_every_customer_once_recovers_failures_and_notifies)
test_sigkill_mid_job_through_pgbouncer = (
    test_workers.test_a_cluster_killed_with_sigkill_mid_job_loses_nothing_and_repeats_nothing)
test_stop_all_and_resume_through_pgbouncer = (
    test_workers.test_stopping_every_cluster_mid_job_and_starting_one_later_resumes_through_tick)


def test_a_pooled_cluster_records_no_backend_on_its_leases(clusters):
    """Dead-backend detection is off behind the pooler: leases carry no backend, only the time rule."""
    from partitions.models import Partition
    from tests.support import seed, started_job, wait_for

    seed(subscriptions=2000)
    running = clusters(1)
    job = started_job("tests.bump_range", {"partitions": 2, "sleep_ms": 40})
    wait_for(lambda: Partition.objects.filter(job=job, status="running").exists(), timeout=60,
             what="a claim", clusters=running)
    assert not Partition.objects.filter(job=job, lease_backend_pid__isnull=False).exists()
