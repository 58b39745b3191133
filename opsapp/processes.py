"""Stopping child process groups the way django-q2 needs: SIGTERM to each main pid only (SIGTERM to a whole
qcluster group can hang it, upstream issue #346), then SIGKILL to the groups still there after a grace period.
Used by `runstack` and by the benchmarks' and tests' qclusters."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable


def stop_groups(procs: Iterable[subprocess.Popen], *, grace: float,
                on_kill: Callable[[subprocess.Popen], None] | None = None) -> None:
    """SIGTERM every main pid first (so their grace periods overlap), then SIGKILL each group still running."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if on_kill:
                on_kill(proc)
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 the process's whole group (a started_new_session child and everything it forked)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
