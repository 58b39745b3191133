"""The engine's only adapter to django-q2: its task entry points (plan, drain, finalize, tick, the job starts
of legacy django-q2 schedules), the dispatcher that turns engine notifications into tasks, the broker that
wakes clusters by NOTIFY (`WakeupBroker`, driven by `partitions.engine.wakeups`), the tick schedule, and what the
admin and /metrics read from django-q2 (cluster stats, queued tasks). Nothing else in `partitions` imports
django_q.

The ORM broker delivers at least once (a task whose `retry` window passes runs
again), so every task here is short and idempotent: the real leases and
attempt counters live in our tables. Argument names avoid django-q2's option
names (`timeout`, `group`, `hook`, …), which it strips from kwargs.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.signals import post_spawn
from django_q.signing import SignedPackage
from django_q.status import Stat
from django_q.tasks import async_task

from partitions import conf, worker
from partitions.core.logs import log_context
from partitions.engine import claiming, dispatch, wakeups
from partitions.engine.sql import queries
from partitions.notify import outbox, relay
from partitions.operations import services
from partitions.worker import maintenance, steps

log = logging.getLogger(__name__)

DRAIN = "partitions.tasks.drain"


def _clean_connections(task):
    """Forked workers must never reuse a broken or foreign connection: clean before and after. Every line
    a task logs names its worker."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            with log_context(worker=worker.worker_id()):
                return task(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


@_clean_connections
def plan(job_id: int) -> str:
    with log_context(job=job_id):
        job = steps.job_plan(job_id, worker_id=worker.worker_id())
    dispatch.notifications_due()  # planning started and ended (or failed)
    return f"job {job_id}: " + ("planned" if job else "already planned elsewhere")


@_clean_connections
def drain(job_id: int | None = None) -> dict[str, Any]:
    """Claim and run partitions of the best jobs until nothing can start here or the budget is spent."""
    report = worker.drain(job_id=job_id)
    if report.partitions:  # this worker is free again: keep spares waiting while work is left
        spare_drains_ensure()
    if report.watch_goes_on:  # behind any task queued meanwhile, another drain keeps watching the leases
        async_task(DRAIN)
    return {"job": job_id, "partitions": report.partitions, "outcomes": dict(report.outcomes)}


@_clean_connections
def finalize(job_id: int) -> str:
    with log_context(job=job_id):
        job = steps.job_finalize(job_id, worker_id=worker.worker_id())
    dispatch.notifications_due()  # the job ended
    return f"job {job_id}: " + (job.status if job else "not finalizable now")


@_clean_connections
def notify() -> dict[str, int]:
    """Relay new job events to the outbox and send what is due (at least once; see partitions.notify)."""
    return {**relay.notifications_relay(), **outbox.deliveries_send()}


@_clean_connections
def tick() -> dict[str, dict[str, int]]:
    return maintenance.run_once()


@_clean_connections
def schedules_fire() -> dict[str, int]:
    """A schedule's fire time came (a pusher's wake-up, `partitions.engine.wakeups`): fire what is due now."""
    return maintenance.fire_schedules()


@_clean_connections
def start_scheduled(type_name: str, params: dict[str, Any], schedule_name: str) -> str:
    """Kept for django-q2 Schedules made by the former `job_schedule` helper: start a recurring job with the
    schedule's dedupe key. New recurring runs are `partitions.operations.schedules` (fired by `tick`)."""
    job, created = services.job_start(type_name, params, actor=f"schedule:{schedule_name}",
                                      dedupe_key=f"schedule:{schedule_name}")
    return f"job {job.pk} {'started' if created else 'still running'}"


def drains_waiting() -> int:
    """Drain tasks in the broker that no cluster has taken yet."""
    waiting = OrmQ.objects.filter(key=Conf.CLUSTER_NAME, lock__lte=timezone.now()).order_by("id")[:100]
    return sum(1 for task in waiting if task.func() == DRAIN)


def spare_drains_ensure() -> int:
    """Top the broker up to SPARE_DRAINS waiting drains while partitions could start; return how many were added.

    Work reaches idle workers this way, not through a fixed number of tasks: every claim tops the spares up
    again, so each drain that starts brings the next idle worker in, whichever cluster it is in, until every
    partition that may start has a worker. A busy cluster's pusher may hold a few drains in its local queue
    (at most queue_limit + 1); they are not needed by anyone else, because spares stay in the broker.
    """
    spare = conf.get("SPARE_DRAINS")
    missing = min(spare, claiming.claimable_slots(cap=spare)) - drains_waiting()
    for _ in range(missing):
        async_task(DRAIN)
    return max(0, missing)


class QDispatcher:
    """Turns engine notifications into django-q2 tasks."""

    #: Seconds between two spare checks of one process after claims (the broker's poll interval).
    CLAIM_CHECK_EVERY = Conf.POLL

    def __init__(self) -> None:
        self._last_claim_check = float("-inf")

    def job_created(self, job_id: int) -> None:
        async_task("partitions.tasks.plan", job_id, group=f"job-{job_id}")

    def work_available(self) -> None:
        spare_drains_ensure()

    def work_claimed(self) -> None:
        now = time.monotonic()
        if now - self._last_claim_check >= self.CLAIM_CHECK_EVERY:
            self._last_claim_check = now
            spare_drains_ensure()

    def notifications_due(self) -> None:
        async_task("partitions.tasks.notify")

    def fleet_workers(self) -> int | None:
        return fleet_workers()

    def job_drained(self, job_id: int) -> None:
        # Only enqueued: the finalize step is claimed on the job row, so a racing finalizer (tick) gets None;
        # the broker's NOTIFY wakes a worker for it at once.
        async_task("partitions.tasks.finalize", job_id, group=f"job-{job_id}")

    def installed(self) -> None:
        """Chosen as the engine's dispatcher (AppConfig.ready): hook worker start-up."""
        post_spawn.connect(on_worker_spawn, dispatch_uid="partitions.on_worker_spawn")


TICK_SCHEDULE = "partitions.tick"


def ensure_tick_schedule() -> Schedule:
    """The every-minute `tick` schedule, created if missing (idempotent)."""
    # Schedule.name is not unique, so workers starting together may both create one: keep the oldest.
    existing = list(Schedule.objects.filter(name=TICK_SCHEDULE).order_by("id"))
    if not existing:
        return Schedule.objects.create(name=TICK_SCHEDULE, func="partitions.tasks.tick",
                                       schedule_type=Schedule.MINUTES, minutes=1, repeats=-1)
    Schedule.objects.filter(pk__in=[s.pk for s in existing[1:]]).delete()
    return existing[0]


def on_worker_spawn(sender, **kwargs) -> None:
    """A worker process started (cluster start or recycle): make sure tick is scheduled, and tick once now.

    After a whole-fleet outage the first cluster back reaps expired leases and
    restarts drains at once instead of waiting for the scheduler's next minute.
    """
    try:
        ensure_tick_schedule()
        async_task("partitions.tasks.tick")
    except Exception:
        log.exception("could not schedule tick at worker start")
    finally:
        close_old_connections()


class WakeupBroker(ORM):
    """django-q2's ORM broker, woken by NOTIFY instead of polling (Q_CLUSTER `broker_class`).

    An enqueue inserts the task and notifies in one statement; the pusher's `dequeue` waits on its cluster's
    `wakeups.Waiter` (one LISTEN connection, a long safety-net look; or polling with PARTITIONS_WAKEUPS=poll)
    and takes one task per look in one statement. It also asks a worker to fire schedules when one is due,
    and writes the cluster's stats to the cache every CLUSTER_STATS_SECONDS, not every guard cycle.
    """

    def enqueue(self, task):
        with connections[Conf.ORM].cursor() as cursor:
            cursor.execute(queries["task_enqueue_notify"],
                           {"key": self.list_key or Conf.CLUSTER_NAME, "payload": task, "now": timezone.now()})
            return cursor.fetchone()[0]

    def dequeue(self):
        waiter = self._pusher_waiter()
        due = waiter.wait()
        if due.schedules:
            self._fire_schedules()
        if not due.queue:
            return None
        now = timezone.now()
        try:
            with connections[Conf.ORM].cursor() as cursor:
                cursor.execute(queries["task_take"], {"key": self.list_key, "now": now,
                                                   "until": now + timedelta(seconds=Conf.RETRY)})
                taken = cursor.fetchall()
        except DatabaseError:  # the server is away: look again soon (the waiter reconnects on its own)
            log.warning("wake-ups: cannot take a task", exc_info=True)
            connections[Conf.ORM].close()
            waiter.look_failed()
            return None
        waiter.looked(found=bool(taken))
        return taken or None

    def _pusher_waiter(self) -> wakeups.Waiter:
        waiter = getattr(self, "_waiter", None)
        if waiter is None:  # the first look of this pusher process
            level, message = wakeups.startup_message(Conf.POLL)
            log.log(level, message)
            waiter = self._waiter = wakeups.Waiter(list_key=self.list_key, poll_seconds=Conf.POLL, alias=Conf.ORM)
        return waiter

    @staticmethod
    def _fire_schedules() -> None:
        try:
            async_task("partitions.tasks.schedules_fire")
        except Exception:  # tick fires them within a minute anyway
            log.exception("could not ask for a schedule fire")

    def set_stat(self, key: str, value: str, timeout: int):
        """django-q2 saves its stats every guard cycle (0.5 s, three statements on the database cache): write
        them when the cluster's state changes, else every CLUSTER_STATS_SECONDS, kept three intervals."""
        every = conf.get("CLUSTER_STATS_SECONDS")
        stat = SignedPackage.loads(value)
        state = (stat.status, tuple(stat.workers), getattr(stat, "pusher", None), getattr(stat, "monitor", None))
        written = getattr(self, "_stats_written", {})
        last_state, last_at = written.get(key, (None, float("-inf")))
        now = time.monotonic()
        if state == last_state and now - last_at < every:
            return None
        written[key] = (state, now)
        self._stats_written = written
        return super().set_stat(key, value, max(timeout, int(3 * every)))


# What the admin and /metrics read from django-q2 ----------------------------------------------------------


def clusters_recent() -> list[dict]:
    """django-q2 clusters that reported to the shared cache lately ([] when none or no cache)."""
    try:
        with transaction.atomic():  # a cache-table error must not poison the caller's transaction
            stats = Stat.get_all()
    except Exception:  # the stats cache is best-effort; the page falls back to lease owners
        log.warning("cannot read django-q2 cluster stats", exc_info=True)
        return []
    return [
        {"cluster_id": str(s.cluster_id), "host": s.host, "status": s.status, "workers": len(s.workers),
         "tob": s.tob, "timestamp": s.timestamp, "task_q_size": s.task_q_size, "done_q_size": s.done_q_size}
        for s in stats
    ]


def fleet_workers() -> int | None:
    """Worker processes of the clusters reporting now (None when none reports: the fleet's size is unknown)."""
    running = [c for c in clusters_recent() if str(c["status"]) != str(Conf.STOPPED)]
    return sum(c["workers"] for c in running) if running else None


def queued_tasks() -> int:
    """Tasks waiting in the django-q2 ORM broker (taken by a cluster or not)."""
    return OrmQ.objects.count()
