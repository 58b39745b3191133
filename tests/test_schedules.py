"""Recurring runs: cadences, validation at creation and at each fire, overlap, missed fires, automatic pause,
and a fire claimed once under concurrent firers (real PostgreSQL; the real-cluster test is test_schedule_firing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django import forms
from django.db.models.functions import Now
from django.utils import timezone

from partitions.core.exceptions import InvalidParams, InvalidSchedule, JobTypeNotFound, ScheduleNameTaken
from partitions.jobtypes import registry
from partitions.models import Job, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import CRON, DAYS, MINUTES, MONTHLY, Cadence, cadence_errors, next_fire, parse_offset
from tests.support import cli

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

NIGHTLY = Cadence(kind=CRON, cron="0 2 * * *", tz="Europe/Madrid")


def make_schedule(name: str = "nightly", cadence: Cadence = NIGHTLY, **fields) -> JobSchedule:
    return schedules.schedule_create(actor="test", name=name, type_name="tests.bump_range",
                                     params=fields.pop("params", {"partitions": 2}), cadence=cadence, **fields)


def make_due(schedule: JobSchedule, ago: timedelta = timedelta(seconds=1)) -> None:
    JobSchedule.objects.filter(pk=schedule.pk).update(next_run_at=Now() - ago)


def events(schedule: JobSchedule) -> list[str]:
    return list(ScheduleEvent.objects.filter(schedule_name=schedule.name).order_by("id").values_list("type", flat=True))


# Cadences (pure) -----------------------------------------------------------------------------------------------


def test_a_cron_cadence_fires_at_its_wall_time_in_its_time_zone_summer_and_winter():
    winter = next_fire(NIGHTLY, datetime(2026, 1, 10, 12, tzinfo=UTC))
    summer = next_fire(NIGHTLY, datetime(2026, 7, 10, 12, tzinfo=UTC))
    assert winter == datetime(2026, 1, 11, 1, tzinfo=UTC)  # 02:00 CET
    assert summer == datetime(2026, 7, 11, 0, tzinfo=UTC)  # 02:00 CEST


def test_interval_cadences_keep_their_anchor_phase_and_monthly_clamps_to_the_months_last_day():
    anchor = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    every_5 = Cadence(kind=MINUTES, every=5, anchor=anchor)
    assert next_fire(every_5, datetime(2026, 1, 1, 0, 41, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 45, tzinfo=UTC)
    assert next_fire(every_5, datetime(2026, 1, 1, 0, 45, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 50, tzinfo=UTC)
    daily = Cadence(kind=DAYS, every=1, tz="Europe/Madrid", anchor=datetime(2026, 3, 1, 6, tzinfo=UTC))  # 07:00
    assert next_fire(daily, datetime(2026, 4, 1, 12, tzinfo=UTC)) == datetime(2026, 4, 2, 5, tzinfo=UTC)  # 07:00 CEST
    monthly = Cadence(kind=MONTHLY, every=1, anchor=datetime(2026, 1, 31, 7, tzinfo=UTC))
    assert next_fire(monthly, datetime(2026, 2, 1, tzinfo=UTC)) == datetime(2026, 2, 28, 7, tzinfo=UTC)
    assert next_fire(monthly, datetime(2026, 2, 28, 7, tzinfo=UTC)) == datetime(2026, 3, 31, 7, tzinfo=UTC)


@pytest.mark.parametrize(("cadence", "field"), [
    (Cadence(kind=CRON, cron="61 * * * *"), "cron"),
    (Cadence(kind=CRON, cron="every night"), "cron"),
    (Cadence(kind=MINUTES, every=0), "every"),
    (Cadence(kind="weekly"), "kind"),
    (Cadence(kind=CRON, cron="0 2 * * *", tz="Mars/Olympus"), "tz"),
])
def test_a_bad_cadence_names_its_field(cadence, field):
    assert field in cadence_errors(cadence)


def test_relative_deadlines_parse_within_bounds():
    assert parse_offset("+90m") == timedelta(minutes=90)
    assert parse_offset("2h") == timedelta(hours=2)
    assert parse_offset("+1d") == timedelta(days=1)
    assert parse_offset("+0m") is None and parse_offset("+999d") is None and parse_offset("soon") is None


# Creating ---------------------------------------------------------------------------------------------------


def test_a_schedule_is_created_with_cleaned_params_and_its_next_fire():
    schedule = make_schedule(max_parallel=3, deadline_offset=timedelta(minutes=90))
    assert schedule.params == {"partitions": 2, "sleep_ms": None}
    assert schedule.enabled and schedule.next_run_at.astimezone(UTC).hour in (0, 1)  # 02:00 Madrid
    assert events(schedule) == ["schedule_created"]


@pytest.mark.parametrize(("fields", "error"), [
    ({"params": {"partitions": 0}}, InvalidParams),
    ({"type_name": "no.such_type"}, JobTypeNotFound),
    ({"cadence": Cadence(kind=CRON, cron="0 25 * * *")}, InvalidSchedule),
    ({"name": "has space"}, InvalidSchedule),
    ({"deadline_offset": timedelta(seconds=5)}, InvalidSchedule),
    ({"max_parallel": -1}, InvalidParams),
])
def test_bad_input_creates_nothing(fields, error):
    with pytest.raises(error):
        schedules.schedule_create(actor="test", **{"name": "nightly", "type_name": "tests.bump_range",
                                                   "params": {"partitions": 2}, "cadence": NIGHTLY, **fields})
    assert not JobSchedule.objects.exists() and not ScheduleEvent.objects.exists()


def test_a_name_in_use_is_refused():
    make_schedule()
    with pytest.raises(ScheduleNameTaken):
        make_schedule(cadence=Cadence(kind=MINUTES, every=5))
    assert JobSchedule.objects.count() == 1


# Firing ----------------------------------------------------------------------------------------------------------


def test_a_due_schedule_starts_one_job_with_its_params_and_options_and_moves_to_its_next_fire():
    schedule = make_schedule(max_parallel=3, priority=5, deadline_offset=timedelta(minutes=90))
    assert schedules.schedules_fire_due()["fire_started"] == 0  # not due yet
    make_due(schedule)
    counts = schedules.schedules_fire_due()
    assert counts["fire_started"] == 1
    job = Job.objects.get()
    schedule.refresh_from_db()
    assert (job.type_name, job.params, job.max_parallel, job.priority) == ("tests.bump_range", schedule.params, 3, 5)
    assert job.dedupe_key == "schedule:nightly"
    assert timedelta(minutes=89) < job.deadline - schedule.last_run_at <= timedelta(minutes=90)
    assert schedule.last_job == job and schedule.next_run_at > schedule.last_run_at
    assert events(schedule) == ["schedule_created", "fire_started"]
    assert schedules.schedules_fire_due()["fire_started"] == 0  # once per fire


def test_a_fire_starts_its_run_even_when_this_hosts_clock_runs_past_the_fires_deadline():
    # The deadline is the fire's database time plus its offset; a firer whose own clock runs ahead (a skewed
    # host, or a test that moves the clock) must not refuse it as past and pause the schedule.
    schedule = make_schedule(deadline_offset=timedelta(minutes=90))
    make_due(schedule)
    with time_machine.travel(timezone.now() + timedelta(hours=3), tick=True):
        assert schedules.schedules_fire_due()["fire_started"] == 1
    schedule.refresh_from_db()
    assert schedule.enabled and Job.objects.get().deadline == schedule.last_run_at + timedelta(minutes=90)


def test_a_fire_while_the_last_run_is_active_is_skipped_and_recorded():
    schedule = make_schedule()
    make_due(schedule)
    schedules.schedules_fire_due()
    make_due(schedule)
    counts = schedules.schedules_fire_due()
    assert counts == {**counts, "fire_started": 0, "fire_skipped": 1}
    assert Job.objects.count() == 1
    skipped = ScheduleEvent.objects.get(type="fire_skipped")
    assert skipped.job == Job.objects.get() and "still pending" in skipped.data["reason"]
    schedule.refresh_from_db()
    assert schedule.next_run_at > schedule.last_run_at  # it waits for its next fire, not a retry loop


def test_after_an_outage_missed_fires_make_one_catch_up_run_not_one_each():
    schedule = make_schedule(cadence=Cadence(kind=MINUTES, every=5),
                             start_at=timezone.now() - timedelta(hours=3, minutes=1))
    make_due(schedule, ago=timedelta(hours=3))  # its fire 3 h ago, and 36 more, passed while every cluster was down
    schedules.schedules_fire_due()
    assert Job.objects.count() == 1
    missed = ScheduleEvent.objects.get(type="fire_missed")
    assert missed.data["missed"] == 37 and missed.data["caught_up"] is True
    schedule.refresh_from_db()
    assert schedule.next_run_at > schedule.last_run_at


def test_without_catch_up_missed_fires_are_only_recorded(settings):
    settings.PARTITIONS_SCHEDULE_CATCH_UP = False
    schedule = make_schedule(cadence=Cadence(kind=MINUTES, every=5), start_at=timezone.now() - timedelta(hours=1))
    make_due(schedule, ago=timedelta(minutes=30))
    assert schedules.schedules_fire_due()["fire_missed"] == 1
    assert not Job.objects.exists()
    make_due(schedule, ago=timedelta(seconds=5))  # an on-time fire after that starts as usual
    assert schedules.schedules_fire_due()["fire_started"] == 1


def test_a_schedule_whose_params_stop_validating_is_paused_with_the_reason(monkeypatch):
    schedule = make_schedule()

    class Stricter(forms.Form):
        partitions = forms.IntegerField(min_value=5)

    monkeypatch.setattr(registry.get("tests.bump_range"), "Params", Stricter)
    make_due(schedule)
    assert schedules.schedules_fire_due()["schedule_auto_paused"] == 1
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_run_at is None
    assert "partitions" in schedule.paused_reason and "greater than or equal to 5" in schedule.paused_reason
    assert not Job.objects.exists()
    with pytest.raises(InvalidParams):  # resuming checks the params again
        schedules.schedule_resume(schedule.name, actor="test")
    assert not JobSchedule.objects.get().enabled


def test_pause_resume_run_now_and_delete_are_recorded_with_the_actor(operator):
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(Permission.objects.get(codename="delete_jobschedule"))  # deleting: its own right
    operator = type(operator).objects.get(pk=operator.pk)  # no cached permissions
    schedule = make_schedule()
    schedules.schedule_pause(schedule.name, actor=operator)
    assert schedules.schedules_fire_due()["fire_started"] == 0
    result = schedules.schedule_run_now(schedule.name, actor=operator)  # run now works while paused
    assert result.outcome == "fire_started" and result.job.created_by == operator
    resumed = schedules.schedule_resume(schedule.name, actor=operator)
    assert resumed.enabled and resumed.next_run_at is not None
    schedules.schedule_delete(schedule.name, actor=operator)
    assert not JobSchedule.objects.exists() and Job.objects.count() == 1
    history = list(ScheduleEvent.objects.order_by("id").values_list("type", "actor"))
    assert history == [("schedule_created", "test"), ("schedule_paused", "user:operator"),
                       ("fire_started", "user:operator"), ("schedule_resumed", "user:operator"),
                       ("schedule_deleted", "user:operator")]


def _fire_in_child(barrier):
    barrier.wait()
    return schedules.schedules_fire_due()["fire_started"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_firers_start_one_job_per_fire(children):
    schedule = make_schedule()
    make_due(schedule)
    started = children.race(_fire_in_child, lambda i: (), n=6, name="firer")
    assert sum(started) == 1
    assert Job.objects.count() == 1
    assert ScheduleEvent.objects.filter(type="fire_started").count() == 1


# The CLI ----------------------------------------------------------------------------------------------------

def test_the_schedule_commands_create_list_run_pause_resume_show_and_delete_with_json():
    code, out, err = cli("schedule", "billing.send_invoices", "--param", "period=2026-11", "--cron", "0 2 * * *",
                         "--tz", "Europe/Madrid", "--deadline", "+90m", "--max-parallel", "4", "--name",
                         "nightly-invoices", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["cadence"] == "cron 0 2 * * * (Europe/Madrid)" and created["deadline"] == "+90m"
    assert created["params"]["period"] == "2026-11" and created["max_parallel"] == 4
    listed = json.loads(cli("schedules", "--json")[1])
    assert [s["name"] for s in listed] == ["nightly-invoices"]
    ran = json.loads(cli("schedule-run", "nightly-invoices", "--json")[1])
    assert ran["outcome"] == "fire_started"
    job = Job.objects.get(pk=ran["job"])
    assert job.max_parallel == 4 and job.deadline is not None and job.dedupe_key == "schedule:nightly-invoices"
    again = json.loads(cli("schedule-run", "nightly-invoices", "--json")[1])
    assert again["outcome"] == "fire_skipped" and again["job"] == job.pk
    assert "paused" in cli("schedule-pause", "nightly-invoices")[1]
    assert json.loads(cli("schedules", "--json")[1])[0]["enabled"] is False
    assert "resumed" in cli("schedule-resume", "nightly-invoices")[1]
    shown = json.loads(cli("schedule-show", "nightly-invoices", "--json")[1])
    assert [h["type"] for h in shown["history"]][:3] == ["schedule_resumed", "schedule_paused", "fire_skipped"]
    assert "deleted" in cli("unschedule", "nightly-invoices")[1]
    assert cli("schedules")[1].strip() == "no schedules"
