"""A job keeps running through a failover: real qclusters on a primary with a streaming-replication standby of
its own (opsapp.devdb in a temp folder, through opsapp.bench.promotion), reached by one libpq multi-host
DATABASE_URL; the primary is stopped at once mid-run (every backend dies, no shutdown checkpoint), the standby is
promoted, and the job finishes there. Every row is updated exactly once (a trigger counts the updates that
survived, and the row's own counter agrees), the job succeeded and its completion proof holds, no lease token
was handed out twice, and no qcluster process died. Synchronous replication loses nothing committed;
asynchronous may lose the last transactions, and then loses an item's effect and its checkpoint together."""

from __future__ import annotations

import pytest

from opsapp.bench.promotion import standby_pair
from partitions.core.states import JOB_TERMINAL
from tests.support import CLUSTER_ENV, Cluster

pytestmark = pytest.mark.slow  # starts its own PostgreSQL servers and qclusters (not the shared test server)

ROWS = 2000
#: Partitions of 500 rows, 10 batches of 50 that take 150 ms each: the primary is lost mid-run.
JOB = ["tests.bump_range", "--param", "partitions=4", "--param", "sleep_ms=150"]
#: Rows checkpointed when the primary is lost.
LOSE_AFTER = ROWS // 5


@pytest.mark.parametrize("synchronous", [True, False], ids=["sync", "async"])
def test_a_job_survives_the_promotion_of_a_standby_and_updates_every_row_once(synchronous, tmp_path):
    with standby_pair(synchronous=synchronous) as pair:
        pair.prepare(ROWS, env=CLUSTER_ENV)
        assert pair.query("SELECT sync_state FROM pg_stat_replication") == [("sync" if synchronous else "async",)]
        clusters = [Cluster(pair.url, tmp_path / f"qcluster-{i}.log") for i in range(2)]
        try:
            job_id = pair.start_job(*JOB, env=CLUSTER_ENV)
            pair.until(lambda: pair.rows_done(job_id) >= LOSE_AFTER, "rows checkpointed before the loss")
            pair.fail_over()
            pair.until(lambda: pair.job_status(job_id) in JOB_TERMINAL, "the job to end on the new primary")
            assert all(cluster.running() for cluster in clusters), "a qcluster exited"
        except Exception:
            print("\n\n".join(f"--- {c.log_path.name}\n{c.tail(80)}" for c in clusters))
            raise
        finally:
            for cluster in clusters:
                cluster.kill()

        # The server left is the promoted standby (the old primary stays down, as a failover manager keeps it).
        assert pair.query("SELECT pg_is_in_recovery(), current_setting('data_directory')") == [
            (False, str(pair.primary.standby().data_dir))]
        ((status, error),) = pair.query("SELECT status, error FROM partitions_job WHERE id = %s", [job_id])
        assert status == "succeeded", error
        assert pair.updates() == {"rows_once": ROWS, "rows_repeated": 0, "rows_missed": 0}
        assert pair.query("""SELECT count(*) FROM opsapp_subscription s JOIN failover_before b USING (id)
                             JOIN failover_updates u USING (id)
                             WHERE s.product_version - b.product_version = u.n""") == [(ROWS,)], (
            "each row's own counter moved by the updates that survived")
        assert "is complete" in pair.manage("jobs", "verify", str(job_id), env=CLUSTER_ENV)  # the completion proof
        claims = pair.query("""SELECT partition_id, (data->>'token')::bigint FROM partitions_jobevent
                               WHERE job_id = %s AND type = 'partition_claimed' ORDER BY id""", [job_id])
    tokens: dict[int, list[int]] = {}
    for partition_id, token in claims:
        tokens.setdefault(partition_id, []).append(token)
    assert all(seen == sorted(set(seen)) for seen in tokens.values()), f"a lease token handed out twice: {tokens}"
    logs = "".join(cluster.log_path.read_text(errors="replace") for cluster in clusters)
    assert "reincarnated" not in logs, "a qcluster process died and django-q2 started another"
    assert "the database is gone or read-only" in logs, "the workers noticed the loss"
