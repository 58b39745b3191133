"""One lease renewer per worker process: a daemon thread that renews every lease the process holds in one
statement, instead of a thread (and a connection) per running partition.

Each lease is held once, by whoever claimed it: a drain holds what it claimed and hands each run its `Held`
(the run lengthens it to its job type's lease); a run outside a drain holds its own (`holding`). A run checks
`Held.lost` between batches; a lease the renewal no longer matches (taken over, cancelled,
reaped) is marked lost, and the run stops and rolls its batch back. Each lease is renewed a third of its
length after the last renewal (leases due together share one statement), so it always has two thirds of
its length ahead. The thread lives only while leases are held, and closes its connection when it ends (so a
process that forks children, or a test database being dropped, finds no stray connection).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection

from partitions.core.humanize import plural
from partitions.engine import claiming

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Held:
    """A lease this process holds."""

    partition_id: int
    token: int
    lease_seconds: float
    #: time.monotonic() when the lease is due for renewal (a third of its length after the last one).
    due: float = 0.0
    holders: int = 1
    lost: bool = field(default=False)


class LeaseRenewer:
    """The renewer of one process (see `renewer()`)."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], Held] = {}
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._sessions = 0

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the thread between the leases of one drain (it ends with the last session and lease)."""
        with self._wake:
            self._sessions += 1
        try:
            yield
        finally:
            with self._wake:
                self._sessions -= 1
            self._end_if_idle()

    def hold(self, partition_id: int, token: int, lease_seconds: float) -> Held:
        """Keep this lease renewed until every holder has released it."""
        with self._wake:
            held = self._held.get((partition_id, token))
            if held is not None:  # the run after the drain's claim: renew to the longer lease, as due already
                held.holders += 1
                held.lease_seconds = max(held.lease_seconds, lease_seconds)
                return held
            held = Held(partition_id, token, lease_seconds, due=time.monotonic() + lease_seconds / 3)
            self._held[(partition_id, token)] = held
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
                self._thread.start()
            self._wake.notify()
        return held

    def lengthen(self, held: Held, lease_seconds: float) -> None:
        """Renew `held` for at least `lease_seconds` from its next renewal on (a job type's own, longer lease)."""
        with self._wake:
            held.lease_seconds = max(held.lease_seconds, lease_seconds)

    @contextmanager
    def holding(self, partition_id: int, token: int, lease_seconds: float, held: Held | None) -> Iterator[Held]:
        """The lease for the block: `held`, as its claimer holds it (lengthened to `lease_seconds`), or, when
        nobody holds it (a run outside a drain), held here until the block ends."""
        if held is not None:
            self.lengthen(held, lease_seconds)
            yield held
            return
        held = self.hold(partition_id, token, lease_seconds)
        try:
            yield held
        finally:
            self.release(held)

    def release(self, held: Held) -> None:
        with self._wake:
            held.holders -= 1
            if held.holders <= 0:
                self._held.pop((held.partition_id, held.token), None)
        self._end_if_idle()

    def _end_if_idle(self) -> None:
        with self._wake:
            thread = self._thread if not self._held and not self._sessions else None
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)  # it ends now that nothing is held, and closes its connection

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._held and not self._sessions:
                        self._thread = None
                        return
                    now = time.monotonic()
                    batch = [h for h in self._held.values() if h.due <= now]
                    if not batch:  # sleep until the next lease is due (or a lease is held or released)
                        self._wake.wait(timeout=min((h.due for h in self._held.values()), default=now + 60) - now)
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
            log.warning("renewing %s failed", plural(len(batch), "lease"), exc_info=True)
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
