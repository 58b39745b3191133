"""The seam between the engine and whatever runs workers: the dispatcher only enqueues.

Services and workers call these after their transaction commits; a dispatcher turns each into a task
(django-q2's, `partitions.tasks.QDispatcher`) and runs nothing itself. Which one is PARTITIONS_DISPATCHER: a
dotted path to a class built with no arguments (the aliases "django_q" and None, for none, are kept). Without
one (engine tests, scripts, benches driving workers themselves), nothing is enqueued. Every call that reaches a
dispatcher is counted by name (`counts()`, for metrics; each is logged at debug level).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

#: Short names PARTITIONS_DISPATCHER accepts besides a dotted path.
ALIASES: dict[str, str | None] = {"django_q": "partitions.tasks.QDispatcher", "none": None, "": None}


class Dispatcher(Protocol):
    def job_created(self, job_id: int) -> None: ...
    def work_available(self) -> None: ...
    def job_drained(self, job_id: int) -> None: ...
    def work_claimed(self) -> None: ...
    def notifications_due(self) -> None: ...
    def fleet_workers(self) -> int | None: ...


_dispatcher: Dispatcher | None = None
_counts: Counter[str] = Counter()


def current() -> Dispatcher | None:
    return _dispatcher


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def dispatcher_path(setting: str | None) -> str | None:
    """The dotted path PARTITIONS_DISPATCHER names (an alias resolved), or None for no dispatcher."""
    if setting is None:
        return None
    if not isinstance(setting, str):
        raise ImproperlyConfigured(f"PARTITIONS_DISPATCHER must be a dotted path or None, not {setting!r}.")
    name = setting.strip()
    return ALIASES[name.lower()] if name.lower() in ALIASES else name


def dispatcher_load(setting: str | None) -> Dispatcher | None:
    """The dispatcher PARTITIONS_DISPATCHER names, built; its `installed()` hook (if any) runs once."""
    path = dispatcher_path(setting)
    if path is None:
        return None
    try:
        dispatcher = import_string(path)()
    except ImportError as exc:
        raise ImproperlyConfigured(f"PARTITIONS_DISPATCHER {setting!r}: cannot import {path!r} ({exc}).") from exc
    if hook := getattr(dispatcher, "installed", None):
        hook()
    return dispatcher


def counts() -> dict[str, int]:
    """Calls that reached a dispatcher since this process started, by name (job_created, work_available, …)."""
    return dict(_counts)


def _reached(name: str) -> Dispatcher | None:
    if _dispatcher is not None:
        _counts[name] += 1
        log.debug("dispatch: %s", name)
    return _dispatcher


def job_created(job_id: int) -> None:
    """A job was started: plan it."""
    if dispatcher := _reached("job_created"):
        dispatcher.job_created(job_id)


def work_available() -> None:
    """Partitions may start now (a job planned, resumed or retried, or tick found claimable work): make sure
    drains wait for them. Drains serve every job, so this names none."""
    if dispatcher := _reached("work_available"):
        dispatcher.work_available()


def work_claimed() -> None:
    """A worker just took work: if more could start, make sure idle workers elsewhere can find it."""
    if dispatcher := _reached("work_claimed"):
        dispatcher.work_claimed()


def job_drained(job_id: int) -> None:
    """The last partition of a job finished: enqueue its finalize step."""
    if dispatcher := _reached("job_drained"):
        dispatcher.job_drained(job_id)


def notifications_due() -> None:
    """Job events that notify were logged (a step began or ended, a job ended): relay and send them."""
    if dispatcher := _reached("notifications_due"):
        dispatcher.notifications_due()


def fleet_workers() -> int | None:
    """Worker processes of the fleet that runs partitions now (None when unknown: no dispatcher, or no cluster
    reported); the projection compares it with a job's max parallel. A question, not a dispatch: not counted."""
    return _dispatcher.fleet_workers() if _dispatcher else None
