"""`bench idle`: what an idle cluster costs the database, and how fast it wakes, per wake-up mode.

Three brokers, each on real `manage.py qcluster` processes: django-q2's own ORM broker (the baseline: a poll
every `poll` seconds, stats every guard cycle), the engine's `WakeupBroker` polling (PARTITIONS_WAKEUPS=poll,
the mode behind a transaction pooler) and the same broker woken by LISTEN/NOTIFY (the default). Per mode:

- idle load of one cluster of W and 4W workers: transactions/s of the database (pg_stat_database) over a
  window, minus the same window with no cluster at all, measured just before (full size only: a backend
  that goes idle reports its counts up to 10 s late, so each window starts SETTLE_SECONDS after the last
  burst of work, the cluster's start-up or the previous cluster's stop);
- pick-up, W workers: a small job (2 partitions of 40 items x 1 ms) from start to its first claim and to
  succeeded, median over a few runs (database clock);
- a schedule's lateness: an interval schedule whose first fire is a few seconds ahead, from its fire time to
  its job's creation (not for django-q2's broker: nothing but the minute `tick` fires schedules there).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

from opsapp.bench import harness, scale, sleep_items
from partitions import tasks
from partitions.core.events import EventType
from partitions.core.states import JOB_TERMINAL
from partitions.engine import claiming
from partitions.models import Job, JobEvent, JobSchedule
from partitions.operations import schedules, services
from partitions.operations.cadence import MINUTES, Cadence


@dataclass(frozen=True)
class Mode:
    key: str
    label: str
    env: dict[str, str]
    #: Whether the pusher fires schedules on time (else only the minute `tick` does).
    fires_schedules: bool


MODES = (
    Mode("orm", "django-q2 ORM broker", {"Q_BROKER_CLASS": "", "PARTITIONS_WAKEUPS": "poll"}, False),
    Mode("poll", "wake-up broker, polling", {"PARTITIONS_WAKEUPS": "poll"}, True),
    Mode("listen", "wake-up broker, LISTEN/NOTIFY", {"PARTITIONS_WAKEUPS": "listen"}, True),
)
#: The small job of the pick-up figures.
SMALL_JOB = {"items": 80, "chunk_size": 40, "work_ms": 1, "concurrency": 1}
#: Seconds before a load window: past the start-up ticks and past PostgreSQL's 10 s idle-backend stats flush.
SETTLE_SECONDS = 12.0
WINDOW_SECONDS = 10.0
LATENCY_RUNS, QUICK_LATENCY_RUNS = 5, 2
#: How far ahead the schedule's first fire is set.
SCHEDULE_AHEAD_SECONDS = 3.0
JOB_TIMEOUT, FIRE_TIMEOUT = 60.0, 90.0
#: Vacuumed first: what autovacuum would otherwise do during the windows, after the scratch database's migrations.
TABLES = ("partitions_job", "partitions_partition", "partitions_subjob", "partitions_jobevent",
          "partitions_jobschedule", "partitions_scheduleevent", "django_q_ormq", "django_q_task", "django_q_schedule",
          "django_cache")


def _small_job(fleet: scale.Fleet) -> tuple[float, float]:
    """(start → first claim, start → succeeded) of one small job, in seconds of the database clock."""
    job, _ = services.job_start(sleep_items.SleepItems.name, SMALL_JOB, actor="bench")
    fleet.wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=sorted(JOB_TERMINAL)).exists(),
                   timeout=JOB_TIMEOUT, what=f"job {job.pk} to finish")
    job.refresh_from_db()
    if job.status != "succeeded":
        raise harness.BenchError(f"idle: the small job {job.status}: {job.error}")
    first = JobEvent.objects.filter(job=job, type=EventType.PARTITION_CLAIMED).order_by("id").first().created_at
    fleet.wait_until_queue_empty()
    return (first - job.created_at).total_seconds(), (job.finished_at - job.created_at).total_seconds()


def _schedule_lateness(fleet: scale.Fleet, name: str) -> float:
    """Seconds from a schedule's first fire time to the creation of the job it started."""
    start_at = claiming.db_now() + timedelta(seconds=SCHEDULE_AHEAD_SECONDS)
    schedule = schedules.schedule_create(actor="bench", cadence=Cadence(kind=MINUTES, every=60), start_at=start_at,
                                         name=name, type_name=sleep_items.SleepItems.name,
                                         params={**SMALL_JOB, "items": 1})
    fleet.wait_for(lambda: JobSchedule.objects.filter(pk=schedule.pk, last_job__isnull=False).exists(),
                   timeout=FIRE_TIMEOUT, what=f"schedule {name} to fire")
    job = JobSchedule.objects.get(pk=schedule.pk).last_job
    fleet.wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=sorted(JOB_TERMINAL)).exists(),
                   timeout=JOB_TIMEOUT, what=f"job {job.pk} to finish")
    JobSchedule.objects.filter(pk=schedule.pk).delete()
    fleet.wait_until_queue_empty()
    return (job.created_at - schedule.next_run_at).total_seconds()


def _idle_load(result: harness.Result, opts: harness.Options, mode: Mode, workers: int, background: float,
               baselines: dict[str, harness.Figure]) -> None:
    time.sleep(SETTLE_SECONDS)
    opts.log(f"idle: {mode.label}, 1 qcluster x {workers} workers, {WINDOW_SECONDS} s")
    tps = scale.idle_transactions_per_second(WINDOW_SECONDS) - background
    key = f"idle_{workers}"
    figure = result.figure(f"{key}_{mode.key}", f"{mode.label}: idle cluster of {workers} workers", tps,
                           "xact/s", vs=tuple(b for b in [baselines.get(key)] if b))
    baselines.setdefault(key, figure)


def _pick_up(result: harness.Result, opts: harness.Options, mode: Mode, fleet: scale.Fleet,
             baselines: dict[str, harness.Figure]) -> None:
    runs = [_small_job(fleet) for _ in range(QUICK_LATENCY_RUNS if opts.quick else LATENCY_RUNS)]
    for index, what in enumerate(("first claim", "succeeded")):
        key = f"small_{index}"
        figure = result.figure(f"{key}_{mode.key}", f"{mode.label}: small job, start to {what} (median)",
                               statistics.median(run[index] for run in runs), "s",
                               vs=tuple(b for b in [baselines.get(key)] if b))
        baselines.setdefault(key, figure)
    if mode.fires_schedules:
        result.figure(f"schedule_late_{mode.key}", f"{mode.label}: schedule fired after its time",
                      _schedule_lateness(fleet, f"bench-idle-{mode.key}"), "s")


def _mode(result: harness.Result, opts: harness.Options, mode: Mode, backgrounds: list[float],
          baselines: dict[str, harness.Figure]) -> None:
    """The mode's fleets: pick-up on W workers (and, full size, the idle load of W and 4W workers)."""
    for workers in (opts.workers,) if opts.quick else (opts.workers, 4 * opts.workers):
        background = None
        if not opts.quick:  # right before the fleet, so autovacuum drift cancels
            time.sleep(SETTLE_SECONDS)
            background = scale.idle_transactions_per_second(WINDOW_SECONDS)
            backgrounds.append(background)
        with scale.fleet(workers, env=mode.env) as fleet:
            fleet.grow_to(1)
            if background is not None:
                _idle_load(result, opts, mode, workers, background, baselines)
            if workers == opts.workers:
                _pick_up(result, opts, mode, fleet, baselines)


def run(opts: harness.Options) -> harness.Result:
    result = harness.Result("idle", params={"q_workers": opts.workers, "small_job": SMALL_JOB,
                                            "window_s": None if opts.quick else WINDOW_SECONDS})
    harness.vacuum(*TABLES)
    backgrounds: list[float] = []
    baselines: dict[str, harness.Figure] = {}
    with harness.engine_for_bench(sleep_items.SleepItems, dispatcher=tasks.QDispatcher()):
        for mode in MODES:
            _mode(result, opts, mode, backgrounds, baselines)
    if backgrounds:
        result.params["background_xact_s"] = [round(b, 2) for b in backgrounds]
        result.baseline("background", "no cluster, mean of the windows before each (subtracted from each)",
                        statistics.mean(backgrounds), "xact/s")
    else:
        result.checks["idle_load"] = "skipped (--quick: windows need 12 s of settling)"
    return result
