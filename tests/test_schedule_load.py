"""Load (issue 23): 1,000 schedules due at once, three real qclusters racing on them; every schedule fires, each
exactly once (one fire_started row and one job per schedule). How soon is a figure, printed here and measured by
`manage.py bench idle` ("schedule fired after its time"), not a bound a test asserts."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.models import Count
from django_q.models import OrmQ
from django_q.tasks import async_task

from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import CRON, Cadence
from tests.support import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCHEDULES, CLUSTERS = 1_000, 3


def test_a_thousand_schedules_due_at_once_across_three_clusters_fire_each_exactly_once(clusters):
    for i in range(SCHEDULES):  # a daily cron: nothing fires again within the test
        schedules.schedule_create(actor="test", name=f"load-{i:04d}", type_name="tests.items_serial",
                                  params={"count": 0, "chunk_size": 1}, cadence=Cadence(kind=CRON, cron="0 3 * * *"))
    running = clusters(CLUSTERS)
    wait_for(lambda: not OrmQ.objects.exists(), timeout=60, what="the clusters' start-up tasks", clusters=running)

    with connection.cursor() as cursor:  # all due at once, on the database's clock
        cursor.execute("UPDATE partitions_jobschedule SET next_run_at = statement_timestamp() - interval '1 second' "
                       "RETURNING statement_timestamp()")
        due_at = cursor.fetchone()[0]
    began = time.monotonic()
    for _ in range(2 * CLUSTERS):  # ticks (the fire duty) for every cluster to race on
        async_task("partitions.tasks.tick")

    def fired() -> int:
        return ScheduleEvent.objects.filter(type="fire_started").count()

    wait_for(lambda: fired() >= SCHEDULES, timeout=60, what=f"{SCHEDULES} fires", clusters=running)
    took = time.monotonic() - began
    last = ScheduleEvent.objects.filter(type="fire_started").order_by("-created_at").first().created_at
    print(f"\n{SCHEDULES} schedules fired by {CLUSTERS} clusters in {took:.1f} s "
          f"(last fire {(last - due_at).total_seconds():.1f} s after they were due)")

    per_schedule = (ScheduleEvent.objects.filter(type="fire_started").values("schedule_name")
                    .annotate(n=Count("id")).values_list("n", flat=True))
    assert len(per_schedule) == SCHEDULES and set(per_schedule) == {1}
    assert Job.objects.count() == SCHEDULES
    assert Job.objects.values("dedupe_key").distinct().count() == SCHEDULES
    assert not ScheduleEvent.objects.filter(type__in=["fire_failed", "fire_skipped"]).exists()
    assert not JobSchedule.objects.filter(next_run_at__lte=due_at).exists()  # every one moved to its next fire
