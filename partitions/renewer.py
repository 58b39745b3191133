"""One lease renewer per worker process: a daemon thread that renews every lease the process holds in one
statement, instead of a thread (and a connection) per running partition.

A run registers its lease with `hold()` and checks `Held.lost` between batches; a lease the renewal no
longer matches (taken over, cancelled, reaped) is marked lost, and the run stops and rolls its batch back.
Each lease is renewed a third of its length after the last renewal (leases due together share one statement),
so a lease always has two thirds of its length ahead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from django.db import connection

from partitions import claiming

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Held:
    """A lease this process holds while it runs the partition."""

    partition_id: int
    token: int
    lease_seconds: float
    #: time.monotonic() when the lease is due for renewal (a third of its length after the last one).
    due: float = 0.0
    lost: bool = field(default=False)


class LeaseRenewer:
    """The renewer of one process (see `renewer()`)."""

    def __init__(self) -> None:
        self._held: set[Held] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def hold(self, partition_id: int, token: int, lease_seconds: float) -> Held:
        """Keep this lease renewed until `release()`."""
        held = Held(partition_id, token, lease_seconds, due=time.monotonic() + lease_seconds / 3)
        with self._lock:
            self._held.add(held)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
                self._thread.start()
            self._wake.notify()  # a shorter lease may need an earlier renewal
        return held

    def release(self, held: Held) -> None:
        with self._lock:
            self._held.discard(held)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    batch = [h for h in self._held if h.due <= now]
                    if not batch:  # sleep until the next lease is due (or a new one is held)
                        self._wake.wait(timeout=min((h.due for h in self._held), default=now + 3600) - now)
                        continue
                    for held in batch:
                        held.due = now + held.lease_seconds / 3
                self.renew(batch)
        finally:
            connection.close()

    @staticmethod
    def renew(batch: list[Held]) -> None:
        """Renew `batch` in one statement; mark the leases it no longer matches as lost."""
        try:
            kept = claiming.partitions_renew_leases([(h.partition_id, h.token, h.lease_seconds) for h in batch])
        except Exception:  # the database is away: leases run out on their own; fencing keeps writes safe
            log.warning("renewing %d lease(s) failed", len(batch), exc_info=True)
            connection.close()
            return
        for held in batch:
            if held.partition_id not in kept:
                held.lost = True


_renewers: dict[int, LeaseRenewer] = {}


def renewer() -> LeaseRenewer:
    """This process's renewer (a forked worker gets its own: threads do not survive a fork)."""
    pid = os.getpid()
    if pid not in _renewers:
        _renewers.clear()
        _renewers[pid] = LeaseRenewer()
    return _renewers[pid]
