"""A job is created only if it can be planned: `services.job_start` runs the split first, so every surface that
starts jobs (service, CLI, schedules, re-runs, the admin) refuses one whose split fails, in one line, writing
nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models.functions import Now

from partitions.core.exceptions import InvalidParams, JobNotPlannable
from partitions.models import Job, JobEvent, JobSchedule, Partition, ScheduleEvent, SubJob
from partitions.operations import schedules, services
from partitions.operations.cadence import HOURS, Cadence
from tests.factories import make_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

REASON = "RuntimeError: the split cannot run"


def job_rows() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Job, Partition, SubJob, JobEvent))


def test_the_service_refuses_a_job_whose_split_fails_and_writes_nothing():
    with pytest.raises(JobNotPlannable) as refused:
        services.job_start("tests.split_fails", {"partitions": 2}, actor="test")
    assert refused.value.reason == REASON
    assert isinstance(refused.value, InvalidParams)  # surfaces that refuse bad params refuse this too
    assert refused.value.errors == {"__all__": [f"the plan cannot be made ({REASON})"]}
    assert job_rows() == (0, 0, 0, 0)


def test_a_job_that_plans_is_still_created():
    job, created = services.job_start("tests.bump_range", {"partitions": 2}, actor="test")
    assert created and job.status == "pending"
    assert job_rows() == (1, 0, 0, 1)  # the job and its job_created event; partitions come with the plan


def test_the_cli_refuses_it_in_one_line():
    err = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("jobs", "start", "tests.split_fails", "--param", "partitions=2", stdout=io.StringIO(),
                     stderr=err)
    assert "the plan cannot be made" in str(refused.value) and REASON in str(refused.value)
    assert "\n" not in str(refused.value) and "Traceback" not in err.getvalue()
    assert job_rows() == (0, 0, 0, 0)


def test_a_schedule_whose_split_fails_pauses_at_its_fire_instead_of_starting_a_job():
    schedule = schedules.schedule_create(actor="test", name="broken", type_name="tests.split_fails",
                                         params={"partitions": 2}, cadence=Cadence(kind=HOURS, every=1))
    JobSchedule.objects.filter(pk=schedule.pk).update(next_run_at=Now())
    schedules.schedules_fire_due()
    schedule.refresh_from_db()
    assert not schedule.enabled and "the plan cannot be made" in schedule.paused_reason
    kinds = ScheduleEvent.objects.filter(schedule_name="broken").order_by("id").values_list("type", flat=True)
    assert list(kinds)[-1] == "schedule_auto_paused"
    assert job_rows() == (0, 0, 0, 0)


def test_a_rerun_of_a_job_that_no_longer_plans_is_refused():
    old = make_job(status="failed", params={"partitions": 2})
    Job.objects.filter(pk=old.pk).update(type_name="tests.split_fails")  # its type's split fails since
    before = job_rows()
    with pytest.raises(JobNotPlannable):
        services.job_rerun(old.pk, actor="test")
    assert job_rows() == before
