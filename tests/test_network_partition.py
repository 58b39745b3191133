"""A worker cut off from the database while it holds a partition, under real qcluster processes: another worker
takes the partition once the lease has run out, the cut-off worker's writes are refused by fencing when its link
returns, it carries on, and nothing is done twice.

The cut is real TCP: each of two clusters reaches PostgreSQL through its own relay on 127.0.0.1
(`tests/blackhole.py`), and the test cuts the link of the one holding the partition (A) like a pulled cable:
every connection stays open and nothing moves either way. On heal, what either side sent meanwhile is delivered
in order, as TCP's retransmissions deliver it after a short partition. The other cluster (B) stays connected.

What a real partition does, and how this test follows it:

- **Dead-backend detection cannot fire.** A lease records its claiming backend, and a lease whose backend is
  gone lapses at once. Here A's backends are alive: the server's end of each connection is open (in production
  the server keeps a silent TCP session until its keepalives give up, by default after about two hours, and an
  idle session with no timeout forever). So B gets the partition only by the time rule, once A's lease has
  expired in database time; the test checks that A's backend was still there when B claimed.
- **Who notices the lapse.** A drain that stands by (one per fleet, when it found nothing to claim) claims a
  lapsing lease at once; when none stands by, as here (the job's one partition had the job's one drain), the
  next `tick` reaps the expired lease and tops the drains up: within a minute of the expiry. The wait for the
  takeover is bounded by that (TAKEOVER_WITHIN).
- **A's open transaction keeps its row locks.** Cut in the middle of a batch, A's transaction holds the locks on
  the rows it updated, so B's first batch (the same rows, after the last committed checkpoint) waits on them. In
  production something must end A's session for B to go on: the partition healing (A's next statement, a fenced
  checkpoint, gets zero rows and rolls back), the server's TCP keepalives, or a server-side
  `idle_in_transaction_session_timeout`. The test heals once B has taken the partition over, then lets the job
  end. It never cuts while A holds the partition's own row lock (between a checkpoint and its commit): B's claim
  skips a locked row, so only the end of A's session could let B in then, a wait this test does not model.
- **Fencing, not timing, keeps the work exactly once.** When the link returns, A's pending write (the batch's
  checkpoint, or its lease renewal) carries the old lease token: zero rows, `LeaseLost`, the batch rolls back and
  A's run ends as `lease_lost`. A trigger counts every committed update of every row: each is updated once.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.db.models import Sum

from opsapp.bench.qclusters import database_url, ready
from opsapp.billing.models import Subscription
from opsapp.billing.seeding import seed_demo
from partitions.models import JobEvent, Partition
from partitions.reads.verification import job_verify
from tests.blackhole import Blackhole, upstream
from tests.support import WAIT, Cluster, finished, row_locked_by_someone_else, started_job, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: Rows to bump: one partition of 6,000 rows in batches of 50, 100 ms each, so its holder is mid-partition for
#: seconds.
ROWS = 6000
#: The longest B may take to claim the lapsed lease: the lease (3 s), then at most a minute to the next tick.
TAKEOVER_WITHIN = 90
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


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", [pid])
        return cursor.fetchone()[0]


def cut_while_idle(hole: Blackhole, application_name: str, partition_id: int) -> None:
    """Cut the link at a moment every statement the cluster sent has run (so nothing of it changes until the
    heal) and it holds no lock on the partition's row (else a claim, which skips locked rows, could never take
    it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        hole.cut()
        settled = time.monotonic() + 2
        while active_backends(application_name) and time.monotonic() < settled:
            time.sleep(0.02)  # a statement that got through before the cut: let it finish
        if not active_backends(application_name) and not row_locked_by_someone_else(partition_id):
            return
        hole.heal()  # mid-commit: let it finish and try again
        time.sleep(0.05)
    pytest.fail("could not cut the link outside a checkpoint commit")


def holder_in(cluster: Cluster, owner: str) -> bool:
    return int(owner.split(":")[1]) in cluster.pids()


def json_lines(cluster: Cluster) -> list[dict]:
    return [json.loads(line) for line in cluster.log_path.read_text().splitlines() if line.startswith("{")]


def test_a_worker_cut_off_mid_partition_is_fenced_out_when_its_link_returns_and_nothing_is_repeated(
        clusters, relays, update_counts):
    seed_demo(products=1, subscriptions=ROWS, customers=1, events=0)
    links, fleet = {}, []
    for name in ("cluster-1", "cluster-2"):
        relay = relays()
        url = database_url({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": relay.port})
        [cluster] = clusters(1, DATABASE_URL=f"{url}?{urlencode({'application_name': name})}", **CLUSTER)
        links[cluster] = (relay, name)
        fleet.append(cluster)
    wait_for(lambda: ready(fleet, workers=1), timeout=60, what="both clusters to start", clusters=fleet)
    job = started_job("tests.bump_range", {"partitions": 1, "sleep_ms": 100})
    wait_for(lambda: Partition.objects.filter(job=job, status="running", done_items__gte=300).exists(),
             timeout=60, what="a worker to be mid-partition", clusters=fleet)
    held = Partition.objects.get(job=job)
    [a] = [c for c in fleet if holder_in(c, held.lease_owner)]  # cut off
    [b] = [c for c in fleet if c is not a]  # connected
    relay, name = links[a]

    cut_while_idle(relay, name, held.pk)
    frozen = Partition.objects.get(pk=held.pk)  # A's renewals cannot reach the server any more
    assert frozen.lease_backend_pid is not None and holder_in(a, frozen.lease_owner)
    wait_for(lambda: Partition.objects.get(pk=held.pk).lease_token > frozen.lease_token,
             timeout=TAKEOVER_WITHIN,
             what="B to take the partition over", clusters=fleet)
    takeover = JobEvent.objects.filter(partition=held, type="partition_claimed").latest("id")
    assert holder_in(b, takeover.actor) and takeover.data["token"] > frozen.lease_token
    # Time, not death: A's backend was alive all along, so only the lease's expiry in database time let B in.
    assert backend_alive(frozen.lease_backend_pid)
    assert takeover.created_at >= frozen.lease_expires_at
    relay.heal()

    def a_fenced_out() -> bool:
        return any(line.get("logger") == "partitions.worker.outcomes" and line.get("partition") == held.pk
                   and line.get("lease_token") == frozen.lease_token
                   and (line.get("outcome") == "lease_lost" or "lease lost" in line["message"])
                   for line in json_lines(a))

    wait_for(a_fenced_out, timeout=WAIT, what="A's write to be refused by fencing", clusters=fleet)
    job = finished(job, fleet)
    assert job.status == "succeeded", job.error
    assert job_verify(job.pk).complete
    assert updates_per_row() == {1: ROWS}, "every row updated exactly once"
    assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    assert job.partitions.aggregate(n=Sum("done_items"))["n"] == ROWS, "A's refused batch counted nothing"

    # One live lease at a time: every claim after the first came after its predecessor let go (released, or
    # reaped as expired), or, for the takeover, after A's lease had expired.
    events = list(JobEvent.objects.filter(partition=held).order_by("id").values_list("type", "created_at", "data"))
    claims = [(at, data["token"]) for kind, at, data in events if kind == "partition_claimed"]
    assert [token for _, token in claims] == sorted({token for _, token in claims}), "tokens only grow"
    for (before, token), (at, _) in itertools.pairwise(claims):
        let_go = any(kind in {"partition_released", "partition_lease_expired"} and before <= when <= at
                     for kind, when, _ in events)
        assert let_go or (token == frozen.lease_token and at >= frozen.lease_expires_at), \
            f"the claim at {at} overlapped token {token}'s lease"

    # A did not die of it: alone, it runs the next job from plan to finalize.
    b.kill()
    assert a.running()
    after = finished(started_job("tests.items_serial", {"count": 20, "chunk_size": 10}), [a])
    assert after.status == "succeeded", after.error
    assert all(holder_in(a, actor) for actor in JobEvent.objects.filter(job=after, type="partition_claimed")
               .values_list("actor", flat=True))
