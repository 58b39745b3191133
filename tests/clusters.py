"""Real `manage.py qcluster` processes against the test database, stopped the way production should stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 15

#: Short leases and drain budgets so crash tests finish quickly; retry > (1 + ceil(5/2)) * (timeout + 3).
CLUSTER_ENV = {
    "PARTITIONS_LEASE_SECONDS": "3",
    "PARTITIONS_DRAIN_BUDGET_SECONDS": "5",
    "PARTITIONS_JOB_MODULES": "tests.jobtypes",
    "Q_WORKERS": "2",
    "Q_TIMEOUT": "30",
    "Q_RETRY": "200",
    "LOG_LEVEL": "INFO",
}


class Cluster:
    """One qcluster in its own process group (so kill -9 can take the whole cluster down)."""

    def __init__(self, db_url: str, log_path: Path, **extra_env: str):
        env = {**os.environ, **CLUSTER_ENV, "DATABASE_URL": db_url, **extra_env}
        self.log_path = log_path
        self.killed = False
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=REPO, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM to the main pid only (SIGTERM to the group can hang django-q2), SIGKILL after a grace period."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        """kill -9 every process of the cluster at once: a machine dying."""
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._log.close()

    def pids(self) -> set[int]:
        """Every live process of this cluster (its process group)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.proc.pid:  # field 5 of /proc/PID/stat: the process group id
                found.add(int(stat.parent.name))
        return found

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, clusters: list[Cluster] = ()) -> None:
    """Poll until condition() is true; on timeout fail with the clusters' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if dead := [c for c in clusters if c.proc.poll() is not None and not c.killed]:
            raise AssertionError(f"a qcluster exited early:\n{dead[0].tail()}")
        time.sleep(0.2)
    logs = "\n\n".join(f"--- {c.log_path.name}\n{c.tail()}" for c in clusters)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def finished(job, clusters: list[Cluster], timeout: float = 120):
    """Wait for a job to end under these clusters; the job, refreshed."""
    from partitions.models import Job
    from partitions.states import JOB_TERMINAL

    wait_for(lambda: Job.objects.get(pk=job.pk).status in JOB_TERMINAL, timeout=timeout,
             what=f"job {job.pk} to finish", clusters=clusters)
    job.refresh_from_db()
    return job
