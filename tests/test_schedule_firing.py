"""Schedules fire under real qclusters: a cron and an interval schedule each start one job per fire with their
params, and two clusters racing (every worker ticks at start, several ticks queued at once) never double-fire."""

from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django_q.tasks import async_task

from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import CRON, MINUTES, Cadence
from tests import jobtypes  # noqa: F401 - registers tests.bump_range here too
from tests.support import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def jobs_of(name: str) -> list[Job]:
    return list(Job.objects.filter(dedupe_key=f"schedule:{name}").order_by("id"))


def all_due() -> None:
    JobSchedule.objects.update(next_run_at=Now() - timedelta(seconds=1))


def test_cron_and_interval_schedules_fire_once_per_fire_under_two_clusters(clusters):
    for name, cadence in [("every-minute-cron", Cadence(kind=CRON, cron="* * * * *")),
                          ("every-minute", Cadence(kind=MINUTES, every=1))]:
        schedules.schedule_create(actor="test", name=name, type_name="tests.bump_range",
                                  params={"partitions": 1}, cadence=cadence, max_parallel=2)
    all_due()
    running = clusters(2)  # each worker ticks as it starts: four firers race on the due rows

    for fire in (1, 2):
        wait_for(lambda n=fire: all(len(jobs_of(s)) >= n for s in ("every-minute-cron", "every-minute")),
                 timeout=60, what=f"fire {fire} of both schedules", clusters=running)
        wait_for(lambda: all(j.is_terminal for j in Job.objects.all()), timeout=60, what="the runs to end",
                 clusters=running)
        if fire == 1:  # the next fire, made due now instead of in a minute; several ticks compete for it
            all_due()
            for _ in range(4):
                async_task("partitions.tasks.tick")

    wait_for(lambda: not JobSchedule.objects.filter(next_run_at__lte=Now()).exists(), timeout=30,
             what="no fire left due", clusters=running)
    # Every minute is also a real cadence: on a slow run a minute boundary passes and a third fire is due,
    # legitimately. Paused now, the schedules fire no more; what is proven is one run per fire time.
    for name in ("every-minute-cron", "every-minute"):
        schedules.schedule_pause(name, actor="test")
    wait_for(lambda: all(j.is_terminal for j in Job.objects.all()), timeout=60, what="the runs to end",
             clusters=running)
    for name in ("every-minute-cron", "every-minute"):
        runs = jobs_of(name)
        fires = list(ScheduleEvent.objects.filter(schedule_name=name, type="fire_started")
                     .values_list("scheduled_for", flat=True))
        assert len(fires) >= 2 and len(set(fires)) == len(fires), f"{name}: fires {fires}, never two for one time"
        assert len(runs) == len(fires), f"{name}: {len(runs)} jobs for {len(fires)} fires"
        assert all(j.params == {"partitions": 1, "sleep_ms": None} and j.max_parallel == 2 for j in runs)
        assert all(j.status == "succeeded" for j in runs), [j.error for j in runs]
        schedule = JobSchedule.objects.get(name=name)
        assert schedule.last_job == runs[-1]
