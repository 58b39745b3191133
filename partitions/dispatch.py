"""The seam between the engine and whatever runs workers (django-q2 in `partitions.tasks`).

Services call these after their transaction commits; a dispatcher turns them
into tasks. Without one (engine tests, scripts), they do nothing and workers
are driven directly through `partitions.worker.drain`.
"""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def job_created(self, job_id: int) -> None: ...
    def work_available(self) -> None: ...
    def job_drained(self, job_id: int) -> None: ...
    def work_claimed(self) -> None: ...
    def notifications_due(self) -> None: ...
    def fleet_workers(self) -> int | None: ...


_dispatcher: Dispatcher | None = None


def current() -> Dispatcher | None:
    return _dispatcher


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def job_created(job_id: int) -> None:
    """A job was started: plan it."""
    if _dispatcher:
        _dispatcher.job_created(job_id)


def work_available() -> None:
    """Partitions may start now (a job planned, resumed or retried, or tick found claimable work): make sure
    drains wait for them. Drains serve every job, so this names none."""
    if _dispatcher:
        _dispatcher.work_available()


def work_claimed() -> None:
    """A worker just took work: if more could start, make sure idle workers elsewhere can find it."""
    if _dispatcher:
        _dispatcher.work_claimed()


def job_drained(job_id: int) -> None:
    """The last partition of a job finished: finalize it."""
    if _dispatcher:
        _dispatcher.job_drained(job_id)


def notifications_due() -> None:
    """Job events that notify were logged (a step began or ended, a job ended): relay and send them."""
    if _dispatcher:
        _dispatcher.notifications_due()


def fleet_workers() -> int | None:
    """Worker processes of the fleet that runs partitions now (None when unknown: no dispatcher, or no cluster
    reported); the projection compares it with a job's max parallel."""
    return _dispatcher.fleet_workers() if _dispatcher else None
