"""The embedded PostgreSQL: first start, reuse, stop, crash recovery, URL, unprivileged user."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # every test starts PostgreSQL servers of its own


@pytest.fixture
def devdb_dir():
    with tempfile.TemporaryDirectory(prefix="devdb-test-", dir="/tmp") as parent:
        folder = Path(parent) / "db"
        os.chmod(parent, 0o755)
        yield folder
        devdb("standby", folder, "stop")
        devdb("stop", folder)


def devdb(action: str, folder: Path, *rest: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "opsapp.devdb", action, *rest], cwd=REPO, env={**env, "DEVDB_DIR": str(folder)},
        capture_output=True, text=True, timeout=180,
    )


def server_pid(folder: Path) -> int:
    return int((folder / "data" / "postmaster.pid").read_text().split()[0])


def query(url: str, sql: str):
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=5) as conn:
        return conn.execute(sql).fetchone()


def test_lifecycle_first_start_reuse_stop_and_restart_after_a_crash(devdb_dir):
    first = devdb("start", devdb_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("started")
    assert (devdb_dir / "data" / "PG_VERSION").exists()

    url = devdb("url", devdb_dir).stdout.strip()
    assert query(url, "SELECT current_database()") == ("opsapp",)
    pid = server_pid(devdb_dir)

    again = devdb("start", devdb_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already running")
    assert server_pid(devdb_dir) == pid

    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert (devdb_dir / "data" / "postmaster.pid").exists(), "a crash leaves a stale pid file"
    recovered = devdb("start", devdb_dir)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.startswith("started")
    assert query(url, "SELECT 1") == (1,)

    stopped = devdb("stop", devdb_dir)
    assert stopped.stdout.startswith("stopped")
    assert not (devdb_dir / "data" / "postmaster.pid").exists()
    assert devdb("stop", devdb_dir).stdout.startswith("not running")
    status = devdb("status", devdb_dir).stdout
    assert "running: False" in status


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when the tests run as root")
def test_as_root_the_server_runs_as_an_unprivileged_user(devdb_dir):
    assert devdb("start", devdb_dir).returncode == 0
    url = devdb("url", devdb_dir).stdout.strip()
    pid = server_pid(devdb_dir)
    owner_uid = os.stat(f"/proc/{pid}").st_uid
    assert owner_uid != 0
    assert os.stat(devdb_dir / "data").st_uid == owner_uid
    assert query(url, "SELECT current_setting('listen_addresses')") == ("",)


def test_a_standby_streams_synchronously_or_not_and_takes_writes_once_promoted(devdb_dir):
    started = devdb("standby", devdb_dir, "start", "--sync")  # starts the primary first
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("standby started (synchronous)")
    primary_url = devdb("url", devdb_dir).stdout.strip()
    standby_url = primary_url.replace(str(devdb_dir), str(devdb_dir / "standby"))
    both = devdb("url", devdb_dir, "--failover").stdout.strip()
    assert both == primary_url + f",{devdb_dir / 'standby'}&target_session_attrs=read-write"
    assert query(primary_url, "SELECT application_name, sync_state FROM pg_stat_replication") == ("standby", "sync")
    assert query(standby_url, "SELECT pg_is_in_recovery()") == (True,)
    assert devdb("standby", devdb_dir, "start").stdout.startswith("standby already running (asynchronous)")
    assert query(primary_url, "SELECT sync_state FROM pg_stat_replication") == ("async",)
    with psycopg.connect(primary_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("CREATE TABLE before_the_failover AS SELECT 42 AS answer")
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    for _ in range(300):  # asynchronous: the standby replays it a moment later
        if query(standby_url, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == (True,):
            break
        time.sleep(0.1)
    assert "running: True" in devdb("standby", devdb_dir, "status").stdout

    devdb("stop", devdb_dir)
    promoted = devdb("standby", devdb_dir, "promote")
    assert promoted.returncode == 0, promoted.stderr
    assert query(both, "SELECT pg_is_in_recovery(), (SELECT answer FROM before_the_failover)") == (False, 42)
    assert devdb("standby", devdb_dir, "stop").stdout.startswith("standby stopped")
    assert devdb("standby", devdb_dir, "promote").returncode == 1  # not running: one clear line
    again = devdb("standby", devdb_dir, "start")  # the promoted standby is a primary now, not a standby to restart
    assert again.returncode == 1 and "was promoted" in again.stderr
    assert devdb("standby", devdb_dir, "bogus").returncode == 2
