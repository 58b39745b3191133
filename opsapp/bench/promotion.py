"""The promotion round of `bench failover`, and what it shares with tests/test_failover.py: a primary with a
streaming-replication standby of its own in a temp folder (opsapp.devdb), reached by one libpq multi-host
DATABASE_URL, migrated and seeded through `manage.py`, a trigger that counts every row's updates (and when the
last one committed, on the database clock), and the failover itself: the primary stopped at once (every backend
dies, no shutdown checkpoint), then the standby promoted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from django.conf import settings

from opsapp import devdb
from opsapp.bench import harness, qclusters
from partitions.core.states import JOB_TERMINAL

#: Each subscription's product_version before the job, and how many updates of it committed (the last one when).
COUNT_UPDATES = """
CREATE TABLE failover_before AS SELECT id, product_version FROM opsapp_subscription;
CREATE TABLE failover_updates (id bigint PRIMARY KEY, n int NOT NULL, last_at timestamptz NOT NULL);
CREATE FUNCTION failover_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO failover_updates VALUES (NEW.id, 1, statement_timestamp())
        ON CONFLICT (id) DO UPDATE SET n = failover_updates.n + 1, last_at = statement_timestamp();
    RETURN NEW;
END $$;
CREATE TRIGGER failover_count AFTER UPDATE OF product_version ON opsapp_subscription
    FOR EACH ROW EXECUTE FUNCTION failover_count();
"""
#: Seconds a wait on the pair (rows checkpointed, the job ended) may take before the round is declared hung.
WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Pair:
    """A primary and its standby, and the multi-host URL that finds whichever takes writes."""

    primary: devdb.Layout
    url: str

    def manage(self, *args: str, env: Mapping[str, str] = {}) -> str:
        """`manage.py ARGS` on the pair; its stdout (a failure raises with its output)."""
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **env, "DATABASE_URL": self.url})
        if proc.returncode != 0:
            raise harness.BenchError(f"manage.py {' '.join(args)} on the pair: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Rows of one statement on whichever server takes writes ([] for a statement without rows)."""
        with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=5,
                             autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def prepare(self, rows: int, env: Mapping[str, str] = {}) -> None:
        """Migrate, seed `rows` subscriptions of one product and count their updates from now on."""
        self.manage("migrate", "--no-input", "-v", "0", env=env)
        self.manage("createcachetable", env=env)
        self.manage("seed_demo", "--products", "1", "--subscriptions", str(rows), "--events", "0",
                    "--customers", "1", env=env)
        self.query(COUNT_UPDATES)

    def until(self, condition: Callable[[], bool], what: str, *, timeout: float = WAIT_SECONDS) -> None:
        """Poll `condition` (either server may be away meanwhile) until it holds, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(0.02)
        raise harness.BenchError(f"timed out after {timeout:g} s waiting for {what}")

    def fail_over(self) -> datetime:
        """Stop the primary at once and promote the standby; the primary's clock just before its loss."""
        ((lost_at,),) = self.query("SELECT statement_timestamp()")
        devdb.stop(self.primary, mode="immediate")
        devdb.standby_promote(self.primary)
        return lost_at

    def updates(self) -> dict[str, int]:
        """Rows whose updates that survived number exactly one, more than one, none (the trigger's counts)."""
        ((once, repeated, missed),) = self.query("""
            SELECT count(*) FILTER (WHERE u.n = 1), count(*) FILTER (WHERE u.n > 1), count(*) FILTER (WHERE u.n IS NULL)
            FROM opsapp_subscription s LEFT JOIN failover_updates u USING (id)""")
        return {"rows_once": once, "rows_repeated": repeated, "rows_missed": missed}

    def start_job(self, *args: str, env: Mapping[str, str] = {}) -> int:
        """`manage.py jobs start ARGS` on the pair; the job's id."""
        return json.loads(self.manage("jobs", "start", *args, "--json", env=env))["id"]

    def job_status(self, job_id: int) -> str:
        return self.query("SELECT status FROM partitions_job WHERE id = %s", [job_id])[0][0]

    def rows_done(self, job_id: int) -> int:
        """Items its partitions checkpointed so far."""
        return self.query("SELECT coalesce(sum(done_items), 0) FROM partitions_partition WHERE job_id = %s",
                          [job_id])[0][0]

    def first_update_after(self, moment: datetime) -> datetime | None:
        """When the first update after `moment` committed (an effect commits with its checkpoint)."""
        return self.query("SELECT min(last_at) FROM failover_updates WHERE last_at > %s", [moment])[0][0]


@contextmanager
def standby_pair(*, synchronous: bool) -> Iterator[Pair]:
    """A primary with a streaming standby, both ours, in a temp folder the server's user can reach (the checkout's
    binaries linked in when extracted); both stopped and deleted at the end."""
    parent = Path(tempfile.mkdtemp(prefix="failover-", dir="/tmp"))
    parent.chmod(0o755)
    primary = devdb.Layout(parent / "db")
    primary.base.mkdir()
    if (binaries := devdb.layout().bin_dir.parent).exists():
        (primary.base / "pg").symlink_to(binaries)
    try:
        devdb.start(primary)
        devdb.standby_start(primary, synchronous=synchronous)
        yield Pair(primary, devdb.url(lay=primary, failover=True))
    finally:
        for server in (primary.standby(), primary):
            devdb.stop(server, mode="immediate")
        shutil.rmtree(parent, ignore_errors=True)


#: The demo migration, in partitions of 100 rows that each pause after their batch, so the loss lands mid-run.
JOB = ["billing.migrate_subscriptions", "--param", "since=2000-01-01", "--param", "rows_per_partition=100",
       "--pause-ms", "200"]
#: Share of the rows migrated when the primary is lost.
LOSE_AFTER = 0.25


def promotion_round(rows: int, *, lease: float) -> tuple[float, dict[str, int]]:
    """Two qclusters migrate `rows` on a primary with an asynchronous standby; the primary is lost a quarter of the
    way in and the standby promoted. Seconds from the loss to the first checkpoint on the new primary, and the
    checks (rows updated once, repeated, missed; qclusters that died)."""
    env = {"PARTITIONS_LEASE_SECONDS": f"{lease:g}", "PARTITIONS_DRAIN_BUDGET_SECONDS": "5", "Q_WORKERS": "2",
           "Q_TIMEOUT": "30", "Q_RETRY": "200"}
    with standby_pair(synchronous=False) as pair:
        pair.prepare(rows)
        logs = pair.primary.base.parent
        clusters = [qclusters.QCluster({**env, "DATABASE_URL": pair.url}, logs / f"qcluster-{i}.log") for i in range(2)]
        try:
            job_id = pair.start_job(*JOB, env=env)
            pair.until(lambda: pair.rows_done(job_id) >= rows * LOSE_AFTER, "rows migrated before the primary's loss")
            lost_at = pair.fail_over()
            pair.until(lambda: pair.job_status(job_id) in JOB_TERMINAL, "the job to end on the new primary")
            died = sum(not cluster.running() for cluster in clusters)
            ((status, error),) = pair.query("SELECT status, error FROM partitions_job WHERE id = %s", [job_id])
            first = pair.first_update_after(lost_at)
            checks = {**pair.updates(), "qclusters_died": died}
            if status != "succeeded" or first is None or checks["rows_repeated"] or checks["rows_missed"] or died:
                raise harness.BenchError(f"failover: after the promotion the job {status} ({error}); {checks}")
        except harness.BenchError as exc:
            tails = "\n".join(f"--- {c.log_path.name}\n{c.tail()}" for c in clusters)
            raise harness.BenchError(f"{exc}\n{tails}") from exc
        finally:
            qclusters.stop_all(clusters, grace=0)
    return (first - lost_at).total_seconds(), checks
