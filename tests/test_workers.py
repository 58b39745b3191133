"""The demo scenarios end to end under real qcluster processes, including a cluster killed with -9, each run
twice: with the qclusters connected directly, and through a real PgBouncer in transaction-pooling mode.

Behind the pooler there are fewer server connections than clients, so workers, renewers, pushers and item
threads share backends from one transaction to the next: a session setting, a WITH HOLD cursor, a prepared
statement or a session advisory lock would break there. Those clusters run with DATABASE_POOLING=transaction
(no server-side cursors, no dead-backend detection: a killed cluster's partitions come back when their lease
expires).
"""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task

from opsapp import pgbouncer
from opsapp.billing.models import Customer, Event, Invoice, Product, Subscription
from opsapp.billing.seeding import seed_demo
from partitions.models import Job, JobEvent, Partition
from partitions.operations import services
from tests.support import finished, kill_mid_partition_and_finish, seed, started_job, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: PgBouncer's server connections per database: far fewer than the ~14 clients of two clusters.
POOL_SIZE = 4


@pytest.fixture(params=["direct", "pooled"])
def bouncer(request, django_db_setup):
    """None for direct connections, else a running PgBouncer in front of the test database."""
    if request.param == "direct":
        yield None
        return
    if not pgbouncer.available():
        pytest.skip(f"{pgbouncer.BINARY} is not installed (`make test` installs Debian's pgbouncer as root)")
    running = pgbouncer.PgBouncer(connection.settings_dict, pool_size=POOL_SIZE)
    yield running
    running.stop()


@pytest.fixture
def db_url(bouncer, db_url):
    """The test database as the qclusters reach it: directly, or through the pooler."""
    return db_url if bouncer is None else bouncer.url(connection.settings_dict["NAME"])


@pytest.fixture
def clusters(clusters, bouncer):
    """The suite's clusters; behind the pooler configured for it, and asserting their traffic went through it."""
    if bouncer is None:
        yield clusters
        return
    before = bouncer.transactions(connection.settings_dict["NAME"])
    yield lambda n=1, **env: clusters(n, DATABASE_POOLING="transaction", **env)
    assert bouncer.transactions(connection.settings_dict["NAME"]) > before + 100, "the clusters used PgBouncer"


def test_migrate_subscriptions_completes_under_two_clusters_and_migrates_every_row_once(clusters):
    seed_demo(products=6, subscriptions=30_000, customers=10, events=0)
    running = clusters(2)
    job, _ = services.job_start("billing.migrate_subscriptions",
                                {"since": (timezone.now() - timedelta(days=1)).isoformat(),
                                 "rows_per_partition": 2000}, actor="test")
    for _ in range(3):  # duplicate deliveries racing on both clusters
        async_task("partitions.tasks.plan", job.pk)
    job = finished(job, running)
    assert job.status == "succeeded", job.error
    for _ in range(3):
        async_task("partitions.tasks.finalize", job.pk)
    wait_for(lambda: not OrmQ.objects.exists(), timeout=30, what="the extra tasks to run", clusters=running)
    singletons = JobEvent.objects.filter(job=job, type__in=["planning_started", "planning_finished",
                                                            "finalizing_started", "job_succeeded"])
    assert sorted(singletons.values_list("type", flat=True)) == [
        "finalizing_started", "job_succeeded", "planning_finished", "planning_started"]
    changed = Product.objects.filter(updated_at__gte=timezone.now() - timedelta(days=1))
    targets = Subscription.objects.filter(product__in=changed)
    expected = targets.count()
    assert 14_000 < expected < 16_000
    assert not targets.exclude(product_version=F("product__version")).exists()
    assert not Subscription.objects.exclude(product__in=changed).exclude(product_version=1).exists()
    assert job.partitions.aggregate(n=Sum("done_items"))["n"] == expected, "each row counted once"
    assert job.stats["summary"]["subscriptions_migrated"] == expected
    owners = set(JobEvent.objects.filter(job=job, type="partition_claimed").values_list("actor", flat=True))
    assert len(owners) >= 2, "both clusters did work"


def test_dispatch_events_sends_every_event_exactly_once_after_its_ack(clusters):
    seed_demo(products=1, subscriptions=0, customers=1, events=800)
    running = clusters(2)
    job, _ = services.job_start("billing.dispatch_events", {"buckets": 4, "confirm_ms": 20, "concurrency": 8},
                                actor="test")
    job = finished(job, running)
    assert job.status == "succeeded", job.error
    assert Event.objects.filter(status="sent", send_count=1).exclude(ack_id="").count() == 800


def test_send_invoices_mails_every_customer_once_recovers_failures_and_notifies(clusters, tmp_path):
    seed_demo(products=1, subscriptions=0, customers=120, events=0)
    mail = tmp_path / "mail"
    running = clusters(2, EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
                       EMAIL_FILE_PATH=str(mail))
    job, _ = services.job_start("billing.send_invoices", {"period": "2026-11", "work_ms": 5, "fail_rate": 0.1},
                                actor="test")
    job = finished(job, running)
    assert job.status == "failed" and re.search(r"[0-9]+ sub-jobs? failed", job.error)
    failed = job.subjobs.filter(status="failed").count()
    assert 0 < failed < 40
    assert services.subjobs_retry(job.pk, actor="test") == failed
    job = finished(job, running)
    assert job.status == "succeeded", job.error
    assert Invoice.objects.filter(period="2026-11", mailed_at__isnull=False).count() == Customer.objects.count()
    messages = "".join(p.read_text() for p in mail.iterdir())
    assert messages.count("Subject: Your invoice for 2026-11") == 120
    assert messages.count("Subject: Invoice run 2026-11 finished") == 2
    steps = list(JobEvent.objects.filter(job=job, type__in=["planning_started", "prepare_summarized",
                                                             "planning_finished", "finalizing_started",
                                                             "job_succeeded"])
                 .order_by("id").values_list("type", flat=True))
    assert steps[:3] == ["planning_started", "prepare_summarized", "planning_finished"]
    assert steps[-1] == "job_succeeded"


def test_a_cluster_killed_with_sigkill_mid_job_loses_nothing_and_repeats_nothing(clusters):
    seed_demo(products=1, subscriptions=6000, customers=5, events=0)
    victim, survivor = clusters(2)
    job, _ = services.job_start("tests.bump_range", {"partitions": 6, "sleep_ms": 40}, actor="test")
    job = kill_mid_partition_and_finish(job, victim, survivor)
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}, "exactly once"
    assert job.partitions.aggregate(n=Sum("done_items"))["n"] == 6000


def test_stopping_every_cluster_mid_job_and_starting_one_later_resumes_through_tick(clusters):
    seed_demo(products=1, subscriptions=4000, customers=5, events=0)
    first = clusters(1)
    job, _ = services.job_start("tests.bump_range", {"partitions": 4, "sleep_ms": 50}, actor="test")
    wait_for(lambda: Partition.objects.filter(job=job, checkpoint__isnull=False).exists(), timeout=60,
             what="work to start", clusters=first)
    for cluster in first:
        cluster.kill()
    assert Job.objects.get(pk=job.pk).status == "running"
    later = clusters(1)
    job = finished(job, later, timeout=180)
    assert job.status == "succeeded", job.error
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    assert JobEvent.objects.filter(job=job, type__in=["partition_lease_expired", "partition_claimed"]).exists()


@pytest.mark.parametrize("bouncer", ["pooled"], indirect=True)
def test_a_pooled_cluster_records_no_backend_on_its_leases(clusters):
    """Dead-backend detection is off behind the pooler: leases carry no backend, only the time rule."""
    seed(subscriptions=2000)
    running = clusters(1)
    job = started_job("tests.bump_range", {"partitions": 2, "sleep_ms": 40})
    wait_for(lambda: Partition.objects.filter(job=job, status="running").exists(), timeout=60,
             what="a claim", clusters=running)
    assert not Partition.objects.filter(job=job, lease_backend_pid__isnull=False).exists()
