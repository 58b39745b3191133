"""A worker cut off from the database while it holds a partition, under real qcluster processes: another worker
takes the partition once the lease has run out, the cut-off worker's writes are refused by fencing when its link
returns, it carries on, and nothing is done twice.

The cut is real TCP: each of two clusters reaches PostgreSQL through its own relay on 127.0.0.1
(`tests/blackhole.py`), and the test cuts the link of the one holding the partition (A) like a pulled cable, in
the middle of a batch: every connection stays open and nothing moves either way. On heal, what either side sent
meanwhile is delivered in order, as TCP's retransmissions deliver it after a short partition. The other cluster
(B) stays connected.

What a real partition does, and how these tests follow it:

- **Dead-backend detection cannot fire.** A lease records its claiming backend, and a lease whose backend is
  gone lapses at once. Here A's backends are alive: the server's end of each connection is open (in production
  the server keeps a silent TCP session until its keepalives give up, by default after about two hours, and an
  idle session with no timeout for ever). So B gets the partition only by the time rule, once A's lease has
  expired in database time; the first test checks that A's backend was still there when B claimed.
- **Who notices the lapse.** A drain that stands by (one per fleet, when it found nothing to claim) claims a
  lapsing lease at once; when none stands by, as here (the job's one partition had the job's one drain), the
  next `tick` reaps the expired lease and tops the drains up: about a minute after the expiry at worst. The
  wait for the takeover is bounded by that (TAKEOVER_WITHIN).
- **A's open transaction keeps its row locks.** Cut in the middle of a batch, A's transaction holds the locks on
  the rows it updated, so B's first batch (the same rows, after the last committed checkpoint) waits on them
  until A's session ends or its transaction does. Two ways, one test each:
  - the link returns (the first test heals once B waits on A's rows): A's next statement, its fenced
    checkpoint, gets zero rows, `LeaseLost`, the batch rolls back and A's run ends as `lease_lost`;
  - the link stays down, and the server's `idle_in_transaction_session_timeout` (set above the lease) ends A's
    session: its batch rolls back, B finishes the job while A is still cut off, and when A comes back its batch
    fails with the session: the run counts the database as lost (`partitions.engine.failover`), records
    nothing, reconnects and carries on. (Without that timeout only the server's TCP keepalives would end the
    session, after hours by default.)
  The tests never cut while A holds the partition's own row lock (between a checkpoint and its commit): B's
  claim skips a locked row, so only the end of A's session could let B in then.
- **Fencing, not timing, keeps the work exactly once.** A trigger counts every committed update of every row:
  each is updated once, the job verifies complete, and A, alone, then runs the next job from plan to finalize.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.db.models import Sum

from opsapp.bench.qclusters import ready
from opsapp.billing.models import Subscription
from opsapp.billing.seeding import seed_demo
from opsapp.databases import database_url
from partitions.models import Job, JobEvent, Partition
from partitions.reads.verification import job_verify
from tests.blackhole import Blackhole, upstream
from tests.support import WAIT, Cluster, finished, row_locked_by_someone_else, started_job, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: Rows to bump: one partition of 6,000 rows in batches of 50, 100 ms each, so its holder is mid-partition for
#: seconds.
ROWS = 6000
#: The longest B may take to claim the lapsed lease: the lease (3 s), then the next tick (its django-q2 schedule is
#: due every minute, and a cluster's scheduler looks for due schedules every 30 s or so).
TAKEOVER_WITHIN = 120
#: The server's idle_in_transaction_session_timeout in the second test: above the lease (3 s), so the time rule
#: frees the partition first and the timeout only ends the cut-off batch's transaction (and session).
IDLE_TIMEOUT = "6s"
#: One worker a cluster, and a drain keeps its partition for its whole budget (60 s): the partition stays with
#: whichever cluster claimed it until the cut.
CLUSTER = {"Q_WORKERS": "1", "PARTITIONS_DRAIN_BUDGET_SECONDS": "60", "Q_TIMEOUT": "120", "Q_RETRY": "400",
           "LOG_FORMAT": "json"}


@pytest.fixture
def relays(django_db_setup) -> Iterator[Callable[[], Blackhole]]:
    """Start relays in front of the test database's server: `relays()`; each is ended at teardown."""
    started: list[Blackhole] = []

    def start() -> Blackhole:
        started.append(Blackhole(upstream(connection.settings_dict)))
        return started[-1]

    yield start
    for relay in started:
        relay.close()


@pytest.fixture
def update_counts() -> Iterator[None]:
    """A trigger counting every committed update of every subscription, in `subscription_updates`."""
    table = connection.ops.quote_name(Subscription._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE TABLE subscription_updates (subscription_id bigint PRIMARY KEY, n integer NOT NULL);
            CREATE FUNCTION count_subscription_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO subscription_updates VALUES (NEW.id, 1)
                ON CONFLICT (subscription_id) DO UPDATE SET n = subscription_updates.n + 1;
                RETURN NULL;
            END $$;
            CREATE TRIGGER count_update AFTER UPDATE ON {table}
                FOR EACH ROW EXECUTE FUNCTION count_subscription_update();
        """)
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER count_update ON {table}; DROP FUNCTION count_subscription_update(); "
                       "DROP TABLE subscription_updates;")


def updates_per_row() -> dict[int, int]:
    """How many rows were updated how many times (committed updates only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT n, count(*) FROM subscription_updates GROUP BY n")
        return dict(cursor.fetchall())


def active_backends(application_name: str) -> int:
    """Backends of these sessions running a statement (not waiting for their client)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s AND state = 'active'", [application_name])
        return cursor.fetchone()[0]


def backend_state(pid: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
        return (cursor.fetchone() or [None])[0]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", [pid])
        return cursor.fetchone()[0]


def cut_mid_batch(hole: Blackhole, application_name: str, partition_id: int, holder_pid: int) -> None:
    """Cut the link at a moment every statement the cluster sent has run (so nothing of it changes until the
    heal), its holder is inside a batch (its transaction open, holding the locks on the batch's rows) and holds
    no lock on the partition's own row (else a claim, which skips locked rows, could never take it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        hole.cut()
        settled = time.monotonic() + 2
        while active_backends(application_name) and time.monotonic() < settled:
            time.sleep(0.02)  # a statement that got through before the cut: let it finish
        if (not active_backends(application_name) and backend_state(holder_pid) == "idle in transaction"
                and not row_locked_by_someone_else(partition_id)):
            return
        hole.heal()  # between batches, or mid-commit: let it go on and try again
        time.sleep(0.05)
    pytest.fail("could not cut the link inside a batch and outside a checkpoint commit")


def blocked_by(pid: int) -> bool:
    """Whether some session waits on a lock `pid` holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid)))",
                       [pid])
        return cursor.fetchone()[0]


def holder_in(cluster: Cluster, owner: str) -> bool:
    return int(owner.split(":")[1]) in cluster.pids()


def json_lines(cluster: Cluster) -> list[dict]:
    return [json.loads(line) for line in cluster.log_path.read_text().splitlines() if line.startswith("{")]


@dataclass
class Cut:
    """A job whose one partition A held when its link was cut, B the cluster still connected."""

    job: Job
    frozen: Partition  # the partition as A's last write left it
    a: Cluster
    b: Cluster
    relay: Blackhole

    @property
    def fleet(self) -> list[Cluster]:
        return [self.a, self.b]

    def takeover(self) -> JobEvent:
        """Wait for B to claim the partition A held; its claim."""
        wait_for(lambda: Partition.objects.get(pk=self.frozen.pk).lease_token > self.frozen.lease_token,
                 timeout=TAKEOVER_WITHIN, what="B to take the partition over", clusters=self.fleet)
        claim = JobEvent.objects.filter(partition_id=self.frozen.pk, type="partition_claimed").latest("id")
        assert holder_in(self.b, claim.actor) and claim.data["token"] > self.frozen.lease_token
        # One live lease at a time: B got it once A's lease had expired in database time.
        assert claim.created_at >= self.frozen.lease_expires_at
        return claim

    def fenced_out(self) -> None:
        """Wait for A's log to say its write about the partition, with its old token, was refused."""
        def refused() -> bool:
            return any(line.get("logger") == "partitions.worker.outcomes" and line.get("partition") == self.frozen.pk
                       and line.get("lease_token") == self.frozen.lease_token
                       and (line.get("outcome") == "lease_lost" or "lease lost" in line["message"])
                       for line in json_lines(self.a))

        wait_for(refused, timeout=WAIT, what="A's write to be refused by fencing", clusters=self.fleet)

    def session_lost(self) -> None:
        """Wait for A's log to say its drain found its session gone (the server ended it) and reconnected: the
        run stops without recording anything, so no write of A's carries the old token."""
        def noticed() -> bool:
            return any(line.get("logger") == "partitions.engine.failover" and "task drain" in line["message"]
                       for line in json_lines(self.a))

        wait_for(noticed, timeout=WAIT, what="A to notice its session was ended", clusters=self.fleet)


def holder_cut_off(clusters, relays, **env: str) -> Cut:
    """Two clusters, each through its own relay (`env` over CLUSTER); one partition of ROWS rows; the link of the
    cluster holding it cut in the middle of a batch."""
    seed_demo(products=1, subscriptions=ROWS, customers=1, events=0)
    links, fleet = {}, []
    for name in ("cluster-1", "cluster-2"):
        relay = relays()
        url = database_url({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": relay.port})
        [cluster] = clusters(1, **{**CLUSTER, **env, "DATABASE_URL": f"{url}?{urlencode({'application_name': name})}"})
        links[cluster] = (relay, name)
        fleet.append(cluster)
    wait_for(lambda: ready(fleet, workers=1), timeout=60, what="both clusters to start", clusters=fleet)
    job = started_job("tests.bump_range", {"partitions": 1, "sleep_ms": 100})
    wait_for(lambda: Partition.objects.filter(job=job, status="running", done_items__gte=300).exists(),
             timeout=60, what="a worker to be mid-partition", clusters=fleet)
    held = Partition.objects.get(job=job)
    [a] = [c for c in fleet if holder_in(c, held.lease_owner)]
    [b] = [c for c in fleet if c is not a]
    relay, name = links[a]
    cut_mid_batch(relay, name, held.pk, held.lease_backend_pid)
    frozen = Partition.objects.get(pk=held.pk)  # A's renewals cannot reach the server any more
    assert frozen.lease_backend_pid == held.lease_backend_pid and holder_in(a, frozen.lease_owner)
    return Cut(job, frozen, a, b, relay)


def assert_done_once_and_a_carries_on(cut: Cut) -> None:
    """The job succeeded and verifies, each row was updated once, the partition's claims never overlapped, and A
    alone then runs the next job from plan to finalize."""
    job = finished(cut.job, cut.fleet)
    assert job.status == "succeeded", job.error
    assert job_verify(job.pk).complete
    assert updates_per_row() == {1: ROWS}, "every row updated exactly once"
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    assert job.partitions.aggregate(n=Sum("done_items"))["n"] == ROWS, "A's refused batch counted nothing"
    # Every claim after the first came after its predecessor let go (released, or reaped as expired), or, for the
    # takeover, after A's lease had expired (Cut.takeover).
    events = list(JobEvent.objects.filter(partition_id=cut.frozen.pk).order_by("id")
                  .values_list("type", "created_at", "data"))
    claims = [(at, data["token"]) for kind, at, data in events if kind == "partition_claimed"]
    assert [token for _, token in claims] == sorted({token for _, token in claims}), "tokens only grow"
    for (before, token), (at, _) in itertools.pairwise(claims):
        let_go = any(kind in {"partition_released", "partition_lease_expired"} and before <= when <= at
                     for kind, when, _ in events)
        assert let_go or (token == cut.frozen.lease_token and at >= cut.frozen.lease_expires_at), \
            f"the claim at {at} overlapped token {token}'s lease"
    cut.b.kill()
    assert cut.a.running()
    after = finished(started_job("tests.items_serial", {"count": 20, "chunk_size": 10}), [cut.a])
    assert after.status == "succeeded", after.error
    assert all(holder_in(cut.a, actor) for actor in JobEvent.objects.filter(job=after, type="partition_claimed")
               .values_list("actor", flat=True))


def test_a_worker_cut_off_mid_partition_is_fenced_out_when_its_link_returns_and_nothing_is_repeated(
        clusters, relays, update_counts):
    cut = holder_cut_off(clusters, relays)
    cut.takeover()
    # Time, not death: A's backend was alive all along, so only the lease's expiry let B in; and B's first batch
    # waits on the rows of A's open batch.
    assert backend_alive(cut.frozen.lease_backend_pid)
    wait_for(lambda: blocked_by(cut.frozen.lease_backend_pid), timeout=WAIT, what="B to wait on A's batch",
             clusters=cut.fleet)
    cut.relay.heal()
    cut.fenced_out()
    assert_done_once_and_a_carries_on(cut)


def test_a_link_that_stays_down_holds_nobody_up_once_the_server_ends_the_idle_transaction(
        clusters, relays, update_counts):
    """The server's idle_in_transaction_session_timeout (set above the lease, as the docs advise) ends A's open
    batch, releasing its rows: B finishes the job while A is still cut off; when A comes back, its session is
    gone, nothing of its batch committed, and it carries on."""
    cut = holder_cut_off(clusters, relays, PGOPTIONS=f"-c idle_in_transaction_session_timeout={IDLE_TIMEOUT}")
    cut.takeover()
    job = finished(cut.job, cut.fleet)
    assert job.status == "succeeded", job.error
    assert not backend_alive(cut.frozen.lease_backend_pid), "the server ended A's batch session"
    cut.relay.heal()
    cut.session_lost()  # its batch failed with the session: the run stops, reconnects and records nothing
    assert_done_once_and_a_carries_on(cut)
