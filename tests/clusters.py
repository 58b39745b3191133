"""Real `manage.py qcluster` processes against the test database, stopped the way production should stop them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from opsapp.bench.qclusters import QCluster

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


class Cluster(QCluster):
    """One qcluster on `db_url` with the tests' short leases, in its own process group."""

    def __init__(self, db_url: str, log_path: Path, **extra_env: str):
        super().__init__({**CLUSTER_ENV, "DATABASE_URL": db_url, **extra_env}, log_path)


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
