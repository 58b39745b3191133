"""A job keeps running through a failover: real qclusters on a primary with a streaming-replication standby of
its own (opsapp.devdb, in a temp folder), reached by one libpq multi-host DATABASE_URL; the primary is killed
mid-run (an immediate stop: every backend dies at once, no shutdown checkpoint), the standby is promoted, and
the job finishes there. Every row is updated exactly once (a trigger counts the updates that survived, and the
row's own counter agrees), the job succeeded and its completion proof holds, no lease token was handed out
twice, and no worker process died. Synchronous replication loses nothing committed; asynchronous may lose the
last transactions, and then loses an item's effect and its checkpoint together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from opsapp import devdb
from tests.support import CLUSTER_ENV, Cluster

pytestmark = pytest.mark.slow  # starts its own PostgreSQL servers and qclusters (not the shared test server)

ROOT = Path(__file__).resolve().parents[1]
ROWS = 2000
#: A partition of 500 rows runs 10 batches of 50, 150 ms each: the kill lands mid-run.
JOB = ["tests.bump_range", "--param", "partitions=4", "--param", "sleep_ms=150"]
#: Rows updated (checkpointed) when the primary is killed.
KILL_AFTER = ROWS // 5
WAIT = 60.0
TRIGGER = """
CREATE TABLE failover_before AS SELECT id, product_version FROM opsapp_subscription;
CREATE TABLE failover_updates (id bigint PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION failover_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO failover_updates VALUES (NEW.id, 1) ON CONFLICT (id) DO UPDATE SET n = failover_updates.n + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER failover_count AFTER UPDATE OF product_version ON opsapp_subscription
    FOR EACH ROW EXECUTE FUNCTION failover_count();
"""


@pytest.fixture
def primary():
    """A primary of our own in a temp folder the server's user can reach (the binaries shared when extracted)."""
    parent = Path(tempfile.mkdtemp(prefix="failover-", dir="/tmp"))
    parent.chmod(0o755)
    lay = devdb.Layout(parent / "db")
    lay.base.mkdir()
    if (shared := devdb.layout().bin_dir.parent).exists():
        (lay.base / "pg").symlink_to(shared)
    try:
        yield lay
    finally:
        for server in (lay.standby(), lay):
            devdb.stop(server, mode="immediate")
        shutil.rmtree(parent, ignore_errors=True)


def manage(url: str, *args: str) -> str:
    env = {**os.environ, **CLUSTER_ENV, "DATABASE_URL": url}
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, f"manage.py {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def query(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=5, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def until(condition, what: str, clusters: list[Cluster]) -> None:
    """Poll `condition` (a server may be away meanwhile) until true; fail with the clusters' logs after WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except psycopg.OperationalError:
            pass
        time.sleep(0.1)
    logs = "\n\n".join(f"--- {c.log_path.name}\n{c.tail(80)}" for c in clusters)
    raise AssertionError(f"timed out after {WAIT:g} s waiting for {what}\n{logs}")


@pytest.mark.parametrize("synchronous", [True, False], ids=["sync", "async"])
def test_a_job_survives_the_promotion_of_a_standby_and_updates_every_row_once(primary, synchronous, tmp_path):
    devdb.start(primary)
    devdb.standby_start(primary, synchronous=synchronous)
    url = devdb.url(lay=primary, failover=True)
    manage(url, "migrate", "--no-input", "-v", "0")
    manage(url, "createcachetable")
    manage(url, "seed_demo", "--products", "1", "--subscriptions", str(ROWS), "--events", "0", "--customers", "1")
    query(url, TRIGGER)
    expected = "sync" if synchronous else "async"
    assert query(url, "SELECT sync_state FROM pg_stat_replication") == [(expected,)]

    clusters = [Cluster(url, tmp_path / f"qcluster-{i}.log") for i in range(2)]
    try:
        job_id = json.loads(manage(url, "jobs", "start", *JOB, "--json"))["id"]
        until(lambda: query(url, "SELECT coalesce(sum(done_items), 0) FROM partitions_partition WHERE job_id = %s",
                            [job_id])[0][0] >= KILL_AFTER, "rows checkpointed before the kill", clusters)
        devdb.stop(primary, mode="immediate")
        devdb.standby_promote(primary)
        until(lambda: query(url, "SELECT status FROM partitions_job WHERE id = %s", [job_id])[0][0]
              in {"succeeded", "failed", "cancelled"}, "the job to end on the new primary", clusters)
        assert all(cluster.running() for cluster in clusters), "a qcluster exited"
    finally:
        for cluster in clusters:
            cluster.kill()

    # Every server left is the promoted standby: the old primary stays down, as a failover manager keeps it.
    assert query(url, "SELECT pg_is_in_recovery(), current_setting('data_directory')") == [
        (False, str(primary.standby().data_dir))]
    (status, error), = query(url, "SELECT status, error FROM partitions_job WHERE id = %s", [job_id])
    assert status == "succeeded", error
    rows = query(url, """SELECT s.product_version - b.product_version, coalesce(u.n, 0)
                         FROM opsapp_subscription s JOIN failover_before b USING (id)
                         LEFT JOIN failover_updates u USING (id)""")
    assert len(rows) == ROWS
    assert {row for row in rows} == {(1, 1)}, "each row's counter and its update count: exactly once"
    assert "is complete" in manage(url, "jobs", "verify", str(job_id))  # the completion proof, on the new primary
    claims = query(url, """SELECT partition_id, (data->>'token')::bigint FROM partitions_jobevent
                           WHERE job_id = %s AND type = 'partition_claimed' ORDER BY id""", [job_id])
    tokens: dict[int, list[int]] = {}
    for partition_id, token in claims:
        tokens.setdefault(partition_id, []).append(token)
    assert all(seen == sorted(set(seen)) for seen in tokens.values()), f"a lease token handed out twice: {tokens}"
    logs = "".join((tmp_path / f"qcluster-{i}.log").read_text(errors="replace") for i in range(2))
    assert "reincarnated" not in logs, "a qcluster process died and was restarted"
    assert "the database is gone or read-only" in logs
