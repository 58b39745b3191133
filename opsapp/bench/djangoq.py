"""The django-q2 baseline: one no-op task per unit of work on the ORM broker, run by a real cluster.

The cluster runs in a forked child with a modified configuration (django-q2 reads Q_CLUSTER once, at
import, into `Conf`): the project's Q_CLUSTER with W workers and no scheduler (the `tick` schedule
must not run during a measurement), plus one of two setups of the knobs that matter for tiny tasks.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django_q import signals
from django_q.brokers import get_broker
from django_q.cluster import Cluster
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

from opsapp.bench import harness

#: Seconds to wait for a cluster to start, drain, or stop.
CLUSTER_TIMEOUT = 120.0


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    conn_max_age: int
    save_limit: int
    bulk: int


#: django-q2's own defaults for the knobs below (and Django's CONN_MAX_AGE: a new connection per task).
DEFAULTS = Setup("q2_defaults", "django-q2 defaults", conn_max_age=0, save_limit=250, bulk=1)
#: Persistent connections, no result rows, ten tasks per broker round trip.
TUNED = Setup("q2_tuned", "django-q2 tuned", conn_max_age=300, save_limit=-1, bulk=10)


def noop() -> None:
    """The task: nothing."""


def _cluster_main(setup: Setup, workers: int) -> None:
    os.setsid()  # its own process group, so a hung stop can be ended with killpg
    connections.close_all()
    settings.DATABASES[DEFAULT_DB_ALIAS]["CONN_MAX_AGE"] = setup.conn_max_age
    Conf.WORKERS, Conf.SAVE_LIMIT, Conf.BULK, Conf.SCHEDULER = workers, setup.save_limit, setup.bulk, False
    # Bare django-q2: no project hooks on its worker signals (partitions enqueues a `tick` at every worker spawn).
    for hook in (signals.post_spawn, signals.pre_execute, signals.post_execute):
        with hook.lock:
            hook.receivers.clear()
            hook.sender_receivers_cache.clear()
    cluster = Cluster(get_broker())  # installs its SIGTERM handler: stop() and return
    cluster.start()
    cluster.sentinel.join()


def _enqueue(tasks: int) -> None:
    with transaction.atomic():  # all become visible at once
        for _ in range(tasks):
            async_task("opsapp.bench.djangoq.noop")


def _wait_until_drained() -> None:
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    while OrmQ.objects.exists():  # a task leaves the queue when its result is acknowledged
        if time.monotonic() > deadline:
            raise harness.BenchError(f"django-q2 left {OrmQ.objects.count()} tasks after {CLUSTER_TIMEOUT:.0f} s")
        time.sleep(0.02)


@contextmanager
def _cluster(setup: Setup, workers: int) -> Iterator[None]:
    process, receive = harness.start_process(_cluster_main, setup, workers)
    try:
        _enqueue(workers)  # warm-up: the cluster is up once these ran
        _wait_until_drained()
        yield
    finally:
        os.kill(process.pid, signal.SIGTERM)  # the main pid only (upstream issue #346)
        try:
            harness.result_of(process, receive, timeout=CLUSTER_TIMEOUT / 4)
        except harness.BenchError:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.join(10)
        OrmQ.objects.all().delete()


def run_tasks(setup: Setup, *, workers: int, tasks: int, time_enqueue: bool) -> float:
    """Seconds a cluster of `workers` takes to run `tasks` no-op tasks (plus enqueueing them, if asked)."""
    with _cluster(setup, workers):
        if time_enqueue:
            with harness.stopwatch() as elapsed:
                _enqueue(tasks)
                _wait_until_drained()
        else:
            _enqueue(tasks)
            with harness.stopwatch() as elapsed:
                _wait_until_drained()
    return elapsed()
