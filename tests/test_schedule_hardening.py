"""Schedules under bad input and races (issue 23): impossible crons, poisoned rows, zones, start times, DST,
concurrent manual fires, coalesced skips and the schedule permissions (real PostgreSQL; the 1,000-schedule load
under real clusters is test_schedule_load.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.db.models.functions import Now
from django.test import Client
from django.urls import reverse

from partitions.core import validation
from partitions.core.exceptions import InvalidSchedule, NotPermitted
from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import CRON, DAYS, Cadence, cadence_errors, fires_after
from tests.conftest import VIEW_PERMS, make_staff
from tests.support import cli, year_ahead

pytestmark = [pytest.mark.usefixtures("no_dispatcher")]

MADRID = "Europe/Madrid"


def make(name: str = "nightly", cron: str = "0 2 * * *", **fields) -> JobSchedule:
    return schedules.schedule_create(actor="test", name=name, type_name="tests.bump_range",
                                     params={"partitions": 1}, cadence=Cadence(kind=CRON, cron=cron), **fields)


def rows() -> tuple[int, int, int]:
    return JobSchedule.objects.count(), ScheduleEvent.objects.count(), Job.objects.count()


def schedule_cli(*extra: str) -> tuple[int, str, str]:
    return cli("schedule", "tests.bump_range", "--name", "cli-made", "--param", "partitions=1", *extra)


def fires(cadence: Cadence, after: datetime, n: int) -> list[datetime]:
    return list(itertools.islice(fires_after(cadence, after), n))


# Bad cadences, zones and start times: one line from the CLI, a form error in the admin, nothing written -------


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "says"), [
    (["--cron", "0 0 31 2 *"], "never fires"),  # D1: no fire within 5 years
    (["--cron", "0 0 30 2 *"], "never fires"),
    (["--cron", "0 0 * * * *"], "five-field cron"),  # six fields (seconds): not ours
    (["--cron", "0 0 * * * * 2030"], "five-field cron"),
    (["--cron", "61 * * * *"], "five-field cron"),
    (["--cron", "0 2 * * *", "--tz", "Europe"], "Unknown time zone 'Europe'"),  # D3: a directory
    (["--cron", "0 2 * * *", "--tz", "E" * 300], "Unknown time zone"),  # D3: OSError before
    (["--cron", "0 2 * * *", "--tz", "posix/Europe/Madrid"], "Unknown time zone"),  # O8
    (["--cron", "0 2 * * *", "--tz", "../../etc/passwd"], "Unknown time zone"),
    (["--cron", "0 2 * * *", "--tz", "localtime"], "Unknown time zone"),
    (["--every", "+ 5 m"], "expected an interval"),  # O8: loose spacing
    (["--every", "5 m"], "expected an interval"),
    (["--every", "5min"], "expected an interval"),
    (["--every", "\u0665m"], "expected an interval"),  # an Arabic-Indic five
    (["--every", "0m"], "every: Enter a whole number"),
    (["--cron", "0 2 * * *", "--deadline", "+ 90 m"], "expected a deadline"),
    (["--cron", "0 2 * * *", "--deadline", "+90min"], "expected a deadline"),
    (["--every", "1d", "--start-at", "2026-13-01T00:00"], "not an ISO 8601 date-time"),
    (["--every", "1d", "--start-at", "9999-12-31T23:59:59-15:00"], "start_at: Enter a valid date-time"),
    (["--every", "1d", "--start-at", "0001-01-01T00:00:00+15:00"], "start_at: Enter a valid date-time"),
    (["--every", "1d", "--start-at", "2090-01-01T00:00"], "start_at: Enter a valid date-time"),  # past the horizon
    (["--cron", "0 2 * * *", "--param", "partitions=2"], "--param partitions given twice"),  # O8
])
def test_a_bad_schedule_from_the_cli_is_one_line_and_writes_nothing(args, says):
    before = rows()
    code, out, err = schedule_cli(*args)
    assert code in (1, 2) and out == "" and "Traceback" not in err, err
    assert says in err.strip().splitlines()[-1], err
    assert rows() == before


@pytest.mark.django_db
def test_a_start_time_with_a_far_utc_offset_is_stored_as_its_instant():
    # D4: -23:59 is a valid ISO offset but not a PostgreSQL one: the anchor is stored in UTC.
    year = year_ahead()
    code, _, err = schedule_cli("--every", "1d", "--start-at", f"{year}-12-01T00:00-23:59")
    assert code == 0, err
    assert JobSchedule.objects.get(name="cli-made").anchor == datetime(year, 12, 1, 23, 59, tzinfo=UTC)
    with pytest.raises(InvalidSchedule, match="start_at"):
        schedules.schedule_create(actor="test", name="far", type_name="tests.bump_range", params={},
                                  cadence=Cadence(kind=DAYS), start_at=datetime(9999, 12, 31, 23, tzinfo=UTC))


@pytest.mark.parametrize("name", ["Europe", "posix/Europe/Madrid", "right/UTC", "E" * 300, "Europe/Madrid\x00",
                                  "/usr/share/zoneinfo/UTC", "", " UTC", "utc", "localtime", None, 5])
def test_one_zone_validator_refuses_everything_but_a_listed_iana_name(name):
    assert validation.time_zone(name) is None and validation.time_zone_error(name)
    assert "tz" in cadence_errors(Cadence(kind=CRON, cron="0 2 * * *", tz=name))


@pytest.mark.parametrize("text", ["+ 5 m", "5 m", " 5m", "5m ", "5M", "5min", "+-5m", "\u0665m", "5m\n", "", "1234567m",
                                  "5s", "5w", "1.5h", None, 5])
def test_one_duration_grammar_for_every_surface(text):
    assert validation.parse_duration(text) is None and validation.duration(text) is None


def test_the_duration_grammar_accepts_what_it_documents():
    assert validation.duration("90m") == validation.duration("+90m") == timedelta(minutes=90)
    assert validation.parse_duration("2h") == (2, "h") and validation.duration("1d") == timedelta(days=1)


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "says"), [
    ({"schedule-cron": "0 0 31 2 *"}, "cron", "never fires"),
    ({"schedule-cron": "0 0 * * * *"}, "cron", "five-field"),
    ({"schedule-timezone": "Europe"}, "timezone", "Unknown time zone"),
    ({"schedule-timezone": "posix/Europe/Madrid"}, "timezone", "Unknown time zone"),
    ({"schedule-deadline_offset": "+ 5 m"}, "deadline_offset", "Enter a deadline"),
    ({"schedule-kind": "days", "schedule-start_at": "9999-12-31T23:59"}, "start_at", "date-time"),
])
def test_a_bad_schedule_in_the_admin_is_a_form_error_not_a_500(fields, field, says, admin_env):
    user = make_staff("scheduler", *VIEW_PERMS, "add_jobschedule", "start_job")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    before = rows()
    data = {"job_type": "tests.bump_range", "_schedule": "Schedule", "params-partitions": "1",
            "schedule-name": "admin-made", "schedule-kind": "cron", "schedule-cron": "0 2 * * *",
            "schedule-every": "1", "schedule-timezone": "UTC", **fields}
    response = client.post(reverse("admin:partitions_job_start") + "?type=tests.bump_range", data)
    assert response.status_code == 200
    assert says in response.content.decode()
    assert field in response.context["schedule_form"].errors
    assert rows() == before


# One poisoned schedule stops nothing (D2) --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("poison", "says"), [
    ({"cron": "61 * * * *"}, "five-field cron"),
    ({"cron": "0 0 * * * * *"}, "five-field cron"),
    ({"cron": "0 0 31 2 *"}, "never fires"),
    ({"timezone": "Europe"}, "Unknown time zone"),
])
def test_a_poisoned_schedule_is_paused_with_the_reason_and_every_other_one_still_fires(
        poison, says, settings, django_capture_on_commit_callbacks):
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"]}
    poisoned, *_ = [make(name) for name in ("aaa-poisoned", "bbb-healthy", "ccc-healthy")]
    JobSchedule.objects.filter(pk=poisoned.pk).update(**poison)  # behind the forms, as a bad migration would
    JobSchedule.objects.update(next_run_at=Now() - timedelta(seconds=5))
    JobSchedule.objects.filter(pk=poisoned.pk).update(next_run_at=Now() - timedelta(seconds=60))  # first in line
    with django_capture_on_commit_callbacks(execute=True):
        counts = schedules.schedules_fire_due()
    assert counts["fire_failed"] == 1 and counts["fire_started"] == 2
    assert {j.dedupe_key for j in Job.objects.all()} == {"schedule:bbb-healthy", "schedule:ccc-healthy"}
    poisoned.refresh_from_db()
    assert not poisoned.enabled and says in poisoned.paused_reason and poisoned.next_run_at is None
    failed = ScheduleEvent.objects.get(schedule=poisoned, type="fire_failed")
    assert says in failed.data["reason"] and failed.actor == "schedule:aaa-poisoned"
    [message] = mail.outbox
    assert message.to == ["ops@example.com"] and "aaa-poisoned" in message.subject
    assert schedules.schedules_fire_due()["fire_failed"] == 0  # paused: not tried again every tick
    with pytest.raises(InvalidSchedule):  # and not resumed while its cadence is still bad
        schedules.schedule_resume(poisoned.name, actor="cli")


# Daylight saving time (D8): one rule for cron and interval cadences --------------------------------------------

AUTUMN, SPRING = datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC)  # Madrid's changes
CRON_0230 = Cadence(kind=CRON, cron="30 2 * * *", tz=MADRID)
DAILY_0230 = Cadence(kind=DAYS, every=1, tz=MADRID, anchor=datetime(2026, 1, 1, 1, 30, tzinfo=UTC))  # 02:30 CET


@pytest.mark.parametrize("cadence", [CRON_0230, DAILY_0230], ids=["cron", "interval"])
def test_a_wall_time_that_occurs_twice_fires_once_at_its_first_occurrence(cadence):
    # 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens at 00:30 and at 01:30 UTC.
    assert fires(cadence, AUTUMN, 2) == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                                         datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    # Asked from between the two 02:30s (as the next fire after the first one is), it does not fire again.
    first_of_two = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert fires(cadence, first_of_two, 1) == [datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


@pytest.mark.parametrize("cadence", [CRON_0230, DAILY_0230], ids=["cron", "interval"])
def test_a_wall_time_that_does_not_exist_fires_at_the_first_valid_instant_after_it(cadence):
    # 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist, 03:00 CEST (01:00 UTC) is the gap's end.
    assert fires(cadence, SPRING, 2) == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                                         datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


def test_several_cron_times_inside_the_spring_gap_fire_once_and_the_autumn_repeat_is_not_replayed():
    every_20 = Cadence(kind=CRON, cron="*/20 2 * * *", tz=MADRID)
    assert fires(every_20, SPRING, 2) == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                                          datetime(2026, 3, 30, 0, 0, tzinfo=UTC)]
    assert fires(every_20, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 4) == [
        datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 20, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 40, tzinfo=UTC), datetime(2026, 10, 26, 1, 0, tzinfo=UTC)]


# Concurrent manual fires (D9) and coalesced skips (O7) -------------------------------------------------------


def _run_now_from_the_cli(barrier, name: str):
    barrier.wait()
    code, out, err = cli("schedule-run", name)
    return {"code": code, "out": out, "err": err}


@pytest.mark.slow  # forks the firers
@pytest.mark.django_db(transaction=True)
def test_concurrent_manual_fires_start_one_run_and_the_others_answer_skipped_with_exit_0(children):
    make("manual")
    results = children.race(_run_now_from_the_cli, lambda i: ("manual",), 4, "fire")
    assert [r["code"] for r in results] == [0, 0, 0, 0], results
    assert sum("started job" in r["out"] for r in results) == 1, results
    assert sum("skipped: a run is active" in r["out"] for r in results) == 3, results
    assert Job.objects.filter(dedupe_key="schedule:manual").count() == 1
    assert ScheduleEvent.objects.filter(schedule_name="manual", type="fire_started").count() == 1


@pytest.mark.django_db
def test_consecutive_skips_of_one_active_run_are_one_history_row_with_a_count():
    schedule = make("every-minute", cron="* * * * *")
    for _ in range(4):
        JobSchedule.objects.filter(pk=schedule.pk).update(next_run_at=Now() - timedelta(seconds=1))
        schedules.schedules_fire_due()
    history = list(ScheduleEvent.objects.filter(schedule=schedule).order_by("id"))
    assert [e.type for e in history] == ["schedule_created", "fire_started", "fire_skipped"]
    assert history[-1].data["count"] == 3 and "3 fires skipped" in history[-1].data["reason"]
    Job.objects.update(status="succeeded", finished_at=Now())  # the run ends: a fire starts, the next skips anew
    for _ in range(2):
        JobSchedule.objects.filter(pk=schedule.pk).update(next_run_at=Now() - timedelta(seconds=1))
        schedules.schedules_fire_due()
    types = list(ScheduleEvent.objects.filter(schedule=schedule).order_by("id").values_list("type", flat=True))
    assert types[-2:] == ["fire_started", "fire_skipped"]
    assert ScheduleEvent.objects.filter(schedule=schedule).latest("id").data["count"] == 1


# Permissions (O1) -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_job_alone_cannot_create_or_delete_a_schedule_in_the_admin_or_the_services(admin_env):
    starter = make_staff("starter", *VIEW_PERMS, "view_jobschedule", "start_job", "operate_job")
    client = Client(raise_request_exception=False)
    client.force_login(starter)
    before = rows()
    response = client.post(reverse("admin:partitions_job_start") + "?type=tests.bump_range", {
        "job_type": "tests.bump_range", "_schedule": "Schedule", "params-partitions": "1",
        "schedule-name": "sneaky", "schedule-kind": "cron", "schedule-cron": "* * * * *", "schedule-every": "1",
        "schedule-timezone": "UTC"})
    assert response.status_code == 403 and rows() == before
    page = client.get(reverse("admin:partitions_job_start") + "?type=tests.bump_range").content.decode()
    assert 'name="_schedule"' not in page
    with pytest.raises(NotPermitted, match="add_jobschedule"):
        schedules.schedule_create(actor=starter, name="sneaky", type_name="tests.bump_range", params={},
                                  cadence=Cadence(kind=CRON, cron="* * * * *"))
    schedule = make("kept")
    with pytest.raises(NotPermitted, match="delete_jobschedule"):
        schedules.schedule_delete(schedule.name, actor=starter)
    url = reverse("admin:partitions_jobschedule_action", args=[schedule.pk, "delete"])
    assert client.post(url, {"confirm": "yes"}).status_code == 403
    assert JobSchedule.objects.filter(pk=schedule.pk).exists()
    starter.user_permissions.add(Permission.objects.get(codename="delete_jobschedule"))
    starter = type(starter).objects.get(pk=starter.pk)
    schedules.schedule_delete(schedule.name, actor=starter)
    assert not JobSchedule.objects.filter(pk=schedule.pk).exists()
    assert ScheduleEvent.objects.filter(type="schedule_deleted", actor="user:starter").exists()
