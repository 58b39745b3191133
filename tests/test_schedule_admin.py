"""Schedules in the admin: created from the start page (refusals write nothing), the list, the schedule page's
history, and pause / resume / run now / delete: permission-checked, POST + CSRF through a confirm page, audited."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

import tests.jobtypes  # noqa: F401 - registers the test job types
from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import CRON, Cadence
from tests.conftest import VIEW_PERMS, make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

START = "admin:partitions_job_start"
LIST = "admin:partitions_jobschedule_changelist"


@pytest.fixture
def scheduler():
    return make_staff("scheduler", *VIEW_PERMS, "view_jobschedule", "add_jobschedule", "delete_jobschedule",
                      "operate_job", "start_job")


@pytest.fixture
def onlooker():
    return make_staff("onlooker", *VIEW_PERMS, "view_jobschedule")


def client_for(user, **kwargs) -> Client:
    client = Client(raise_request_exception=False, **kwargs)
    client.force_login(user)
    return client


def schedule_post(client: Client, *, name="nightly", cron="0 2 * * *", params=None, **extra):
    params = {"partitions": "2"} if params is None else params
    data = {"job_type": "tests.bump_range", "_schedule": "Schedule", "max_parallel": "3",
            **{f"params-{k}": v for k, v in params.items()}, "schedule-name": name, "schedule-kind": "cron",
            "schedule-cron": cron, "schedule-every": "1", "schedule-timezone": "Europe/Madrid",
            "schedule-deadline_offset": "+90m", **extra}
    return client.post(reverse(START) + "?type=tests.bump_range", data)


def counts() -> tuple[int, int, int]:
    return JobSchedule.objects.count(), ScheduleEvent.objects.count(), Job.objects.count()


def make(name="nightly") -> JobSchedule:
    return schedules.schedule_create(actor="test", name=name, type_name="tests.bump_range",
                                     params={"partitions": 2}, cadence=Cadence(kind=CRON, cron="0 2 * * *"))


def test_schedule_from_the_start_page_with_the_same_params_form(scheduler):
    response = schedule_post(client_for(scheduler))
    schedule = JobSchedule.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:partitions_jobschedule_change",
                                                                   args=[schedule.pk])
    assert (schedule.params["partitions"], schedule.max_parallel, schedule.timezone) == (2, 3, "Europe/Madrid")
    assert schedule.deadline_offset.total_seconds() == 5400 and schedule.created_by == scheduler
    assert not Job.objects.exists()  # scheduling starts nothing now


@pytest.mark.parametrize(("kwargs", "shown"), [
    ({"cron": "0 25 * * *"}, "Enter a valid five-field cron expression"),
    ({"params": {"partitions": "0"}}, "greater than or equal to 1"),
    ({"schedule-timezone": "Mars/Base"}, "Unknown time zone"),
    ({"schedule-deadline_offset": "tomorrow"}, "Enter a deadline after the fire"),
    ({"name": ""}, "A schedule needs a name"),
    ({"deadline": "2030-01-02T03:04"}, "A schedule takes a deadline relative to each fire"),
])
def test_a_bad_schedule_is_shown_on_the_start_page_and_writes_nothing(scheduler, kwargs, shown):
    response = schedule_post(client_for(scheduler), **kwargs)
    assert response.status_code == 200 and shown in response.content.decode()
    assert counts() == (0, 0, 0)


def test_a_schedule_name_in_use_is_refused_on_the_start_page(scheduler):
    make()
    before = counts()
    response = schedule_post(client_for(scheduler))
    assert "is already in use" in response.content.decode()
    assert counts() == before


def test_the_list_shows_cadence_next_and_last_run_and_the_last_jobs_status(scheduler):
    schedule = make()
    result = schedules.schedule_run_now(schedule.name, actor="test")
    page = client_for(scheduler).get(reverse(LIST)).content.decode()
    assert "nightly" in page and "cron 0 2 * * * (UTC)" in page
    assert reverse("admin:partitions_job_change", args=[result.job.pk]) in page and "pending" in page.lower()


def test_the_schedule_page_lists_its_history_each_run_linking_to_its_job(scheduler):
    schedule = make()
    started = schedules.schedule_run_now(schedule.name, actor="test").job
    schedules.schedule_run_now(schedule.name, actor="test")  # skipped: the first run is still active
    url = reverse("admin:partitions_jobschedule_change", args=[schedule.pk])
    page = client_for(scheduler).get(url).content.decode()
    assert "fire_started" in page and "fire_skipped" in page and "still pending" in page
    assert reverse("admin:partitions_job_change", args=[started.pk]) in page
    for action in ("run_now", "pause", "delete"):
        assert reverse("admin:partitions_jobschedule_action", args=[schedule.pk, action]) in page


def test_an_action_asks_first_then_acts_on_post_and_is_audited_with_the_user(scheduler):
    schedule = make()
    client = client_for(scheduler)
    url = reverse("admin:partitions_jobschedule_action", args=[schedule.pk, "pause"])
    asked = client.post(url)
    assert asked.status_code == 200 and "are you sure" in asked.content.decode()
    assert JobSchedule.objects.get().enabled
    assert client.post(url, {"confirm": "yes"}).status_code == 302
    assert not JobSchedule.objects.get().enabled
    audit = ScheduleEvent.objects.get(type="schedule_paused")
    assert audit.actor_user == scheduler and audit.actor == "user:scheduler"


def test_actions_need_their_permission_and_csrf(onlooker, scheduler):
    schedule = make()
    for action in ("run_now", "pause", "delete"):
        url = reverse("admin:partitions_jobschedule_action", args=[schedule.pk, action])
        assert client_for(onlooker).post(url, {"confirm": "yes"}).status_code == 403
    csrf_checked = client_for(scheduler, enforce_csrf_checks=True)
    url = reverse("admin:partitions_jobschedule_action", args=[schedule.pk, "run_now"])
    assert csrf_checked.post(url, {"confirm": "yes"}).status_code == 403
    assert counts() == (1, 1, 0)


def test_bulk_run_now_and_delete_from_the_list(scheduler):
    one, two = make("one"), make("two")
    client = client_for(scheduler)
    selected = {ACTION_CHECKBOX_NAME: [one.pk, two.pk]}
    client.post(reverse(LIST), {"action": "run_now_selected", "post": "yes", **selected})
    assert Job.objects.count() == 2
    confirm = client.post(reverse(LIST), {"action": "delete_selected", **selected})
    assert "are you sure" in confirm.content.decode() and JobSchedule.objects.count() == 2
    client.post(reverse(LIST), {"action": "delete_selected", "post": "yes", **selected})
    assert not JobSchedule.objects.exists()
    assert ScheduleEvent.objects.filter(type="schedule_deleted", actor_user=scheduler).count() == 2
