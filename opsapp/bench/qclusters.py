"""Real `manage.py qcluster` subprocesses, each in its own process group, stopped the way production should
stop them: SIGTERM to the main pid only (SIGTERM to the group can hang django-q2, upstream issue #346), then
SIGKILL to the whole group after a grace period.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from django.conf import settings
from django_q.conf import Conf
from django_q.status import Stat

from opsapp.processes import kill_group, stop_groups

#: Seconds a stopping cluster gets to finish its tasks before its process group is killed.
GRACE_SECONDS = 15.0


class QCluster:
    """One `manage.py qcluster` of this project, with `env` over the current environment, logging to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path):
        self.log_path = log_path
        self.killed = False
        self._log = open(log_path, "ab")  # closed by stop() / kill()
        self.proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR,
                                     env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to the main pid, SIGKILL to the group if it is still there after `grace` seconds."""
        stop_groups([self.proc], grace=grace)
        self.close_log()

    def kill(self) -> None:
        """kill -9 every process of the cluster at once: a machine dying."""
        self.killed = True
        kill_group(self.proc)
        self.close_log()

    def close_log(self) -> None:
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


def stop_all(clusters: Iterable[QCluster], grace: float = GRACE_SECONDS) -> None:
    """Stop clusters together: SIGTERM to every main pid first, so their grace periods overlap."""
    clusters = list(clusters)
    stop_groups([cluster.proc for cluster in clusters], grace=grace)
    for cluster in clusters:
        cluster.close_log()


def ready(clusters: Iterable[QCluster], *, workers: int) -> bool:
    """Whether every cluster reports itself running with all its workers (django-q2's stats, in the cache)."""
    up = {stat.pid for stat in Stat.get_all()
          if stat.status in (Conf.IDLE, Conf.WORKING) and len(stat.workers) == workers}
    return all(cluster.pid in up for cluster in clusters)
