"""A job is created only if it can be planned: `services.job_start` makes and checks the split first, so every
surface that starts jobs (service, CLI, schedules, re-runs, the admin) refuses one whose split fails, in one line,
writing nothing. The check plans the split's statements without running them (`Split.check`): it refuses what
planning would refuse, with the same error, without walking the rows."""

from __future__ import annotations

import io

import pytest
from django import forms
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from opsapp.billing.models import Subscription
from partitions.core.exceptions import InvalidParams, JobNotPlannable, error_line
from partitions.jobtypes.base import JobType
from partitions.jobtypes.registry import register, unregister
from partitions.jobtypes.splits import KeyRange, Modulo
from partitions.models import Job, JobEvent, JobSchedule, Partition, ScheduleEvent, SubJob
from partitions.operations import schedules, services
from partitions.operations.cadence import HOURS, Cadence
from tests.factories import make_job
from tests.support import seed

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


class PatternParams(forms.Form):
    pattern = forms.CharField()
    buckets = forms.IntegerField(min_value=1, required=False)


class PatternRanges(JobType):
    """The subscriptions whose status matches a pattern, in key ranges (or modulo buckets): a pattern PostgreSQL
    cannot compile fails the split's statement on the first row it reads, not in Python."""

    name = "tests.pattern_ranges"
    Params = PatternParams

    def split(self, job, params):
        scope = Subscription.objects.filter(status__regex=params["pattern"])
        if params.get("buckets"):
            return Modulo(scope, "id", buckets=params["buckets"])
        return KeyRange(scope, ("created_at", "id"), partitions=2)

    def process_batch(self, ctx, items):
        """Never called: these tests only start jobs."""


@pytest.fixture
def pattern_ranges():
    register(PatternRanges)
    yield PatternRanges.name
    unregister(PatternRanges.name)


@pytest.mark.parametrize("buckets", [None, 3], ids=["key_range", "modulo"])
def test_a_split_whose_statement_fails_is_refused_with_the_error_its_plan_raises(pattern_ranges, buckets):
    seed(subscriptions=20)
    params = {"pattern": "(", "buckets": buckets}
    with pytest.raises(Exception) as planned, transaction.atomic():
        services.job_preview(pattern_ranges, params)
    with pytest.raises(JobNotPlannable) as refused:
        services.job_start(pattern_ranges, params, actor="test")
    assert refused.value.reason == error_line(planned.value)
    assert "invalid regular expression" in refused.value.reason
    assert job_rows() == (0, 0, 0, 0)


@pytest.mark.parametrize("buckets", [None, 3], ids=["key_range", "modulo"])
def test_the_start_plans_the_split_statement_without_running_it(pattern_ranges, buckets):
    seed(subscriptions=20)
    with CaptureQueriesContext(connection) as queries:
        _, created = services.job_start(pattern_ranges, {"pattern": "^a", "buckets": buckets}, actor="test")
    walks = [q["sql"] for q in queries.captured_queries if "count(*)" in q["sql"].lower()]
    assert created and walks and all(sql.startswith("EXPLAIN") for sql in walks)
