"""Fuzzing the surfaces added last (issue 23) with Hypothesis, like tests/test_fuzz.py does the older ones: schedules
(service, admin start page's Schedule part, every `jobs schedule*` option), the throttle (CLI and admin form), the
time/cost knob (CLI and admin form), prune's age, and the cadence and duration parsers themselves.

Properties: no 500, no traceback on the CLI (exit 1 or 2, the error on the last line), and nothing written when
an input is refused; whatever is accepted is stored and reads back (its next fire computes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from partitions.core import validation
from partitions.core.exceptions import PartitionsError
from partitions.models import Job, JobEvent, JobSchedule, ScheduleEvent
from partitions.operations import schedules
from partitions.operations.cadence import KINDS, Cadence, cadence_errors, next_fire
from tests.factories import make_job
from tests.test_fuzz import FUZZ, HOSTILE, cli_holds, deadlines, texts, whole_numbers

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

#: Inputs that broke the schedule surfaces, mixed into every strategy below.
SCHEDULE_HOSTILE = [
    "0 0 31 2 *", "0 0 30 2 *", "0 0 * * * *", "0 0 * * * * *", "61 * * * *", "* * * * *", "@daily", "0 2 * * *",
    "Europe", "Europe/", "posix/Europe/Madrid", "right/UTC", "localtime", "../etc/passwd", "E" * 300, "UTC",
    "Europe/Madrid", "+ 5 m", "+5m", "5m", "0m", "1d", "999999d", "+90min", "2026-12-01T00:00-23:59",
    "2026-03-29T02:30", "2026-10-25T02:30", "9999-12-31T23:59:59-15:00", "0001-01-01T00:00+15:00",
]
hostile = st.one_of(texts, st.sampled_from(SCHEDULE_HOSTILE))


def row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Job, JobEvent, JobSchedule, ScheduleEvent))


def _accepted_reads_back(name: str) -> None:
    stored = JobSchedule.objects.get(name=name.strip())
    cadence = schedules.cadence_of(stored)
    assert cadence_errors(cadence) == {}
    next_fire(cadence, datetime.now(UTC))


# The parsers -----------------------------------------------------------------------------------------------------


@FUZZ
@given(kind=st.sampled_from([*KINDS, "weekly"]), cron=hostile, every=whole_numbers, tz=hostile)
def test_a_cadence_the_validator_accepts_always_computes_its_next_fire(kind, cron, every, tz):
    cadence = Cadence(kind=kind, cron=cron, every=every, tz=tz, anchor=datetime(2026, 1, 1, tzinfo=UTC))
    if not cadence_errors(cadence):
        first = next_fire(cadence, datetime(2026, 10, 24, tzinfo=UTC))
        assert first > datetime(2026, 10, 24, tzinfo=UTC) and first.tzinfo is not None


@FUZZ
@given(text=hostile)
def test_the_duration_parser_accepts_only_its_grammar(text):
    parsed = validation.parse_duration(text)
    assert (parsed is not None) == bool(re.fullmatch(r"\+?[0-9]{1,6}[mhd]", text))


# The service -----------------------------------------------------------------------------------------------------


@FUZZ
@given(name=hostile, kind=st.sampled_from([*KINDS, "weekly"]), cron=hostile, every=whole_numbers, tz=hostile,
       start_at=deadlines, max_parallel=whole_numbers, priority=whole_numbers)
def test_the_schedule_service_stores_what_it_accepts_and_refuses_the_rest_writing_nothing(
        name, kind, cron, every, tz, start_at, max_parallel, priority):
    before = row_counts()
    try:
        schedules.schedule_create(actor="fuzz", name=name, type_name="tests.bump_range", params={"partitions": 1},
                                  cadence=Cadence(kind=kind, cron=cron, every=every, tz=tz), start_at=start_at,
                                  max_parallel=max_parallel, priority=priority)
    except PartitionsError:
        assert row_counts() == before
        return
    _accepted_reads_back(name)
    JobSchedule.objects.all().delete()
    ScheduleEvent.objects.all().delete()


# The admin -------------------------------------------------------------------------------------------------------


@FUZZ
@given(name=hostile, kind=st.sampled_from([*KINDS, "weekly", ""]), cron=hostile, every=hostile, tz=hostile,
       start_at=hostile, offset=hostile, rate=hostile, pause=hostile, notify=hostile)
def test_the_schedule_form_never_answers_500_and_a_refusal_writes_nothing(
        name, kind, cron, every, tz, start_at, offset, rate, pause, notify, superuser):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    before = row_counts()
    response = client.post(reverse("admin:partitions_job_start") + "?type=tests.bump_range", {
        "job_type": "tests.bump_range", "_schedule": "Schedule", "params-partitions": "1", "max_parallel": "0",
        "rate_limit": rate, "pause_ms": pause, "notify": notify, "schedule-name": name, "schedule-kind": kind,
        "schedule-cron": cron, "schedule-every": every, "schedule-timezone": tz, "schedule-start_at": start_at,
        "schedule-deadline_offset": offset})
    assert response.status_code in (200, 302, 400)
    if response.status_code != 302:
        assert row_counts() == before
        return
    created = JobSchedule.objects.get()
    _accepted_reads_back(created.name)
    JobSchedule.objects.all().delete()
    ScheduleEvent.objects.all().delete()


@pytest.fixture
def running_job(db):
    return make_job(status="running")


@FUZZ
@given(rate=hostile, pause=hostile, ignore=st.sampled_from(["", "on", "off", "\x00"]), max_parallel=hostile,
       deadline=hostile, clear=st.sampled_from(["", "on"]))
def test_the_throttle_and_knob_forms_never_answer_500(rate, pause, ignore, max_parallel, deadline, clear,
                                                      running_job, superuser):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    throttle = client.post(reverse("admin:partitions_job_throttle", args=[running_job.pk]),
                           {"rate_limit": rate, "pause_ms": pause, "ignore_health": ignore})
    knob = client.post(reverse("admin:partitions_job_knob", args=[running_job.pk]),
                       {"max_parallel": max_parallel, "deadline": deadline, "clear_deadline": clear})
    assert throttle.status_code in (200, 302, 400) and knob.status_code in (200, 302, 400)
    Job.objects.get(pk=running_job.pk)  # still reads back: every stored value fits its column


# The CLI ---------------------------------------------------------------------------------------------------------

SCHEDULE_OPTIONS = ["--cron", "--every", "--tz", "--start-at", "--deadline", "--max-parallel", "--priority",
                    "--rate", "--pause-ms", "--notify", "--param", "--name"]


def schedule_args():
    """`jobs schedule` and the commands on one schedule, with any options and values."""
    option = st.tuples(st.sampled_from(SCHEDULE_OPTIONS), hostile)
    create = st.tuples(st.lists(option, max_size=5), hostile, st.booleans()).map(
        lambda t: ["schedule", "tests.bump_range", "--name", t[1], *[a for pair in t[0] for a in pair],
                   *(["--monthly"] if t[2] else [])])
    by_name = st.tuples(st.sampled_from(["schedule-show", "schedule-run", "schedule-pause", "schedule-resume",
                                         "unschedule"]), st.one_of(hostile, st.just("fuzzed"))).map(list)
    throttle = st.tuples(st.one_of(hostile, st.just("JOB")), st.lists(
        st.tuples(st.sampled_from(["--rate", "--pause-ms"]), hostile), max_size=2)).map(
        lambda t: ["throttle", t[0], *[a for pair in t[1] for a in pair]])
    knob = st.tuples(st.one_of(hostile, st.just("JOB")), st.lists(
        st.tuples(st.sampled_from(["--max-parallel", "--deadline"]), hostile), min_size=1, max_size=2)).map(
        lambda t: ["set", t[0], *[a for pair in t[1] for a in pair]])
    prune = hostile.map(lambda age: ["prune", "--older-than", age])
    return st.one_of(create, by_name, throttle, knob, prune)


@FUZZ
@given(args=schedule_args(), as_json=st.booleans())
def test_the_schedule_throttle_knob_and_prune_options_never_print_a_traceback_and_a_refusal_writes_nothing(
        args, as_json, running_job):
    if not JobSchedule.objects.filter(name="fuzzed").exists():
        schedules.schedule_create(actor="fuzz", name="fuzzed", type_name="tests.bump_range", params={},
                                  cadence=Cadence(kind="cron", cron="0 2 * * *"))
    args = [str(running_job.pk) if a == "JOB" else a for a in args]
    if cli_holds(args, as_json, counts=row_counts) == 0 and args[0] == "schedule":
        for made in JobSchedule.objects.exclude(name="fuzzed"):
            _accepted_reads_back(made.name)
        JobSchedule.objects.exclude(name="fuzzed").delete()


def test_the_hostile_lists_cover_what_broke_before():
    assert "0 0 31 2 *" in SCHEDULE_HOSTILE and "Europe" in SCHEDULE_HOSTILE and "+ 5 m" in SCHEDULE_HOSTILE
    assert "9999-12-31T23:59:59-23:59" in HOSTILE


@hypothesis_settings(FUZZ, max_examples=100)
@given(values=st.lists(hostile, min_size=1, max_size=4))
def test_per_run_notify_choices_from_the_cli_never_print_a_traceback(values, settings):
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"]}
    cli_holds(["start", "tests.bump_range", "--param", "partitions=1", *[a for v in values for a in ("--notify", v)]],
              False, counts=row_counts)
