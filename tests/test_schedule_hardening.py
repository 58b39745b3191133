"""Schedules under bad input and races (issue 23): impossible crons, poisoned rows, zones, start times, DST,
concurrent manual fires and coalesced skips (real PostgreSQL; the 1,000-schedule load is in
test_schedule_load.py)."""

from __future__ import annotations

import pytest

from partitions import schedules
from partitions.cadence import CRON, Cadence
from partitions.models import Job, ScheduleEvent
from tests.support import cli

pytestmark = [pytest.mark.usefixtures("no_dispatcher")]


def _run_now_from_the_cli(barrier, name: str):
    barrier.wait()
    code, out, err = cli("schedule-run", name)
    return {"code": code, "out": out, "err": err}


@pytest.mark.django_db(transaction=True)
def test_concurrent_manual_fires_start_one_run_and_the_others_answer_skipped_with_exit_0(children):
    schedules.schedule_create(actor="test", name="manual", type_name="tests.bump_range", params={"partitions": 1},
                              cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    results = children.race(_run_now_from_the_cli, lambda i: ("manual",), 4, "fire")
    assert [r["code"] for r in results] == [0, 0, 0, 0], results
    assert sum("started job" in r["out"] for r in results) == 1, results
    assert sum("skipped: a run is active" in r["out"] for r in results) == 3, results
    assert Job.objects.filter(dedupe_key="schedule:manual").count() == 1
    assert ScheduleEvent.objects.filter(schedule_name="manual", type="fire_started").count() == 1
