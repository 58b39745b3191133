"""Regression tests for each bad input a hostile user found: refused with one clear error, nothing written,
and nobody else's page broken. (The fuzz suite in test_fuzz.py covers the same surfaces at random.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from partitions.core.exceptions import InvalidParams
from partitions.core.validation import REASON_MAX_LENGTH
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.operations import services
from partitions.worker import steps
from tests.factories import make_job, make_partition, make_subjob
from tests.support import cli, year_ahead

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

START = "admin:partitions_job_start"
OUT_OF_RANGE_DEADLINES = ["9999-12-31T23:00:00-15:00", "0001-01-01T00:00:00+15:00", "9999-12-31T23:59:59-23:59"]


def row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Job, Partition, SubJob, JobEvent))


def assert_refused_in_one_line(code: int, err: str, expected: str) -> None:
    assert code in (1, 2), err
    assert "Traceback" not in err
    assert expected in err.strip().splitlines()[-1]


def client_for(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def start_post(client: Client, type_name: str, params: dict[str, str], **options: str):
    data = {"job_type": type_name, "_start": "Start", **{f"params-{k}": v for k, v in params.items()}, **options}
    return client.post(reverse(START) + f"?type={type_name}", data)


# 1. Deadlines outside what PostgreSQL and psycopg can hold ----------------------------------------------------


@pytest.mark.parametrize("deadline", OUT_OF_RANGE_DEADLINES)
def test_an_out_of_range_deadline_is_refused_by_the_cli_with_one_line_and_writes_nothing(deadline):
    before = row_counts()
    code, _, err = cli("start", "billing.send_invoices", "--param", "period=2026-11", "--deadline", deadline)
    assert_refused_in_one_line(code, err, "deadline: Enter a valid date-time.")
    assert row_counts() == before


@pytest.mark.parametrize("deadline", OUT_OF_RANGE_DEADLINES)
def test_an_out_of_range_deadline_is_a_form_error_on_the_start_page(deadline, operator):
    before = row_counts()
    response = start_post(client_for(operator), "billing.send_invoices", {"period": "2026-11"}, deadline=deadline)
    assert response.status_code == 200
    assert response.context["options_form"].errors["deadline"]
    assert row_counts() == before


def test_the_service_refuses_a_deadline_it_cannot_store_even_without_a_form(db):
    far_west = timezone(-timedelta(hours=15))
    with pytest.raises(InvalidParams) as refused:
        services.job_start("billing.send_invoices", {"period": "2026-11"}, actor="test",
                           deadline=datetime(9999, 12, 31, 23, tzinfo=far_west))
    assert refused.value.errors == {"deadline": ["Enter a valid date-time."]}
    assert row_counts() == (0, 0, 0, 0)


def test_an_offset_postgresql_cannot_hold_is_stored_as_utc_and_every_page_still_renders(operator):
    code, _, err = cli("start", "billing.send_invoices", "--param", "period=2026-11",
                       "--deadline", f"{year_ahead() + 1}-01-01T00:00:00+20:00")
    assert code == 0, err
    job = Job.objects.get()
    assert job.deadline == datetime(year_ahead(), 12, 31, 4, tzinfo=UTC)
    client = client_for(operator)
    assert client.get(reverse("admin:partitions_job_changelist")).status_code == 200
    assert client.get(reverse("admin:partitions_job_change", args=[job.pk])).status_code == 200
    assert client.get(reverse("admin:partitions_job_progress") + f"?ids={job.pk}").status_code == 200
    assert cli("list")[0] == 0


def test_a_deadline_in_the_past_is_refused(operator):
    code, _, err = cli("start", "billing.send_invoices", "--param", "period=2026-11",
                       "--deadline", "2001-01-01T00:00:00Z")
    assert_refused_in_one_line(code, err, "deadline: Enter a deadline in the future.")
    response = start_post(client_for(operator), "billing.send_invoices", {"period": "2026-11"},
                          deadline="2001-01-01T00:00")
    assert response.context["options_form"].errors["deadline"] == ["Enter a deadline in the future."]
    assert row_counts() == (0, 0, 0, 0)


# 2. Retrying failed sub-jobs when none failed -------------------------------------------------------------------


def test_retrying_failed_subjobs_when_none_failed_says_so_everywhere(operator):
    job = make_job(status="running")
    partition = make_partition(job, status="running", kind="items")
    make_subjob(partition, seq=0, key="ok", status="succeeded")
    client = client_for(operator)
    before = row_counts()

    single = client.post(reverse("admin:partitions_job_action", args=[job.pk, "retry_subjobs"]),
                         {"confirm": "yes"}, follow=True)
    assert single.status_code == 200
    assert f"Job #{job.pk} has no failed sub-jobs to retry." in single.content.decode()

    bulk_partitions = client.post(reverse("admin:partitions_partition_changelist"), {
        "action": "retry_subjobs_selected", ACTION_CHECKBOX_NAME: [partition.pk], "post": "yes"}, follow=True)
    assert bulk_partitions.status_code == 200
    subjob = SubJob.objects.get()
    bulk_subjobs = client.post(reverse("admin:partitions_subjob_changelist"), {
        "action": "retry_selected", ACTION_CHECKBOX_NAME: [subjob.pk], "post": "yes"}, follow=True)
    assert bulk_subjobs.status_code == 200
    assert "none of the selected sub-jobs had failed" in bulk_subjobs.content.decode()

    code, out, err = cli("retry", str(job.pk), "--subjobs")
    assert (code, out.strip(), err) == (0, f"job {job.pk} has no failed sub-jobs to retry", "")
    assert services.subjobs_retry(job.pk, [], actor="test") == 0
    assert services.job_retry_failed(job.pk, [], actor="test") == 0
    assert row_counts() == before


# 3. Unicode digits in ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "/admin/partitions/job/progress.json?ids=%C2%B2",
    "/admin/partitions/job/%C2%B2/change/",
    "/admin/partitions/job/%D9%A3/change/",
    "/admin/partitions/job/{job}/change/?ebefore=%C2%B2",
    "/admin/partitions/partition/?job=%C2%B2",
    "/admin/partitions/subjob/?job=%C2%B2",
    "/admin/partitions/jobevent/?job=%C2%B2",
    "/admin/partitions/jobevent/?job=99999999999999999999999",
])
def test_unicode_digits_in_an_id_never_give_a_server_error(url, viewer):
    job = make_job(status="running")
    response = client_for(viewer).get(url.format(job=job.pk))
    assert response.status_code in (200, 302)


# 5. Integers and lengths past their column ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["--max-parallel", "2147483648"], "max_parallel: Enter a whole number from 0 to 100,000"),
    (["--priority", "32768"], "priority: Enter a whole number from -32,768 to 32,767"),
    (["--dedupe-key", "k" * 201], "dedupe_key: Use at most 200 characters"),
    (["--max-parallel", "²"], "argument --max-parallel: not a whole number: '²'"),
])
def test_run_options_past_their_column_are_refused_by_the_cli(args, expected):
    code, _, err = cli("start", "billing.send_invoices", "--param", "period=2026-11", *args)
    assert_refused_in_one_line(code, err, expected)
    assert row_counts() == (0, 0, 0, 0)


def test_a_list_limit_past_any_bound_is_refused():
    code, _, err = cli("list", "--limit", "99999999999999999999")
    assert_refused_in_one_line(code, err, "argument --limit: expected a whole number from 1 to 10,000")


def test_max_parallel_past_its_column_is_a_form_error(operator):
    response = start_post(client_for(operator), "billing.send_invoices", {"period": "2026-11"},
                          max_parallel="2147483648")
    assert response.status_code == 200
    assert response.context["options_form"].errors["max_parallel"]
    assert row_counts() == (0, 0, 0, 0)


# 6. The demo's month field ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", ["2026-11\n", "\u0662\u0660\u0662\u0666-11", "2026-11 ", "2026-13",
                                    "\uff12\uff10\uff12\uff16-11"])
def test_a_month_with_a_trailing_newline_or_other_scripts_digits_is_refused(period):
    with pytest.raises(InvalidParams) as refused:
        services.job_start("billing.send_invoices", {"period": period}, actor="test")
    assert refused.value.errors == {"period": ["Enter a month as YYYY-MM."]}
    assert row_counts() == (0, 0, 0, 0)


# 7. Values certain to fail at planning never create a job ------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"since": "9999-12-31T23:59:59-23:59"},
    {"since": "2026-11-01T00:00:00Z", "rows_per_partition": "99999999999999999999"},
])
def test_params_planning_cannot_use_are_refused_before_a_job_exists(params, operator):
    with pytest.raises(InvalidParams):
        services.job_start("billing.migrate_subscriptions", params, actor="test")
    response = start_post(client_for(operator), "billing.migrate_subscriptions", params)
    assert response.status_code == 200 and response.context["params_form"].errors
    preview = client_for(operator).post(reverse(START) + "?type=billing.migrate_subscriptions", {
        "job_type": "billing.migrate_subscriptions", "_preview": "Preview",
        **{f"params-{k}": v for k, v in params.items()}})
    assert preview.status_code == 200 and "preview" not in preview.context
    assert row_counts() == (0, 0, 0, 0)


def test_a_planning_failure_is_one_line_for_operators_with_no_traceback(db):
    from tests.factories import make_job

    # job_start refuses a split that fails (tests/test_plan_check.py); one that fails by the time it is planned:
    job = make_job(status="pending", params={"partitions": 1})
    Job.objects.filter(pk=job.pk).update(type_name="tests.split_fails")
    steps.job_plan(job.pk, worker_id="planner")
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == "planning failed: RuntimeError: the split cannot run"
    assert "Traceback" not in job.error and "/" not in job.error


def test_a_failed_item_keeps_its_traceback_apart_and_viewers_see_one_line(operator, viewer):
    from tests.support import planned_job, run_to_end, seed

    seed(subscriptions=0)
    job = run_to_end(planned_job("tests.items_serial", {"count": 4, "chunk_size": 4, "fail_every": 2}))
    failed = SubJob.objects.filter(job=job, status="failed").first()
    assert failed is not None
    assert "\n" not in failed.error and failed.error.startswith("ValueError:")
    assert failed.traceback.startswith("Traceback (most recent call last)")
    url = reverse("admin:partitions_subjob_change", args=[failed.pk])
    assert "Traceback (most recent call last)" not in client_for(viewer).get(url).content.decode()
    assert "Traceback (most recent call last)" in client_for(operator).get(url).content.decode()


# 10. Free texts with no length limit -----------------------------------------------------------------------------


def test_a_cancel_reason_longer_than_the_limit_is_refused_and_the_job_keeps_running(operator):
    job = make_job(status="running")
    response = client_for(operator).post(reverse("admin:partitions_job_action", args=[job.pk, "cancel"]),
                                         {"confirm": "yes", "reason": "x" * (2 * 1024 * 1024)}, follow=True)
    assert response.status_code == 200
    assert f"use at most {REASON_MAX_LENGTH:,} characters" in response.content.decode().lower()
    job.refresh_from_db()
    assert job.status == "running" and job.error == ""
    assert not JobEvent.objects.filter(job=job, type="job_cancelled").exists()


def test_start_is_refused_with_the_previews_message_when_the_split_fails(operator):
    client = client_for(operator)
    preview = client.post(reverse(START) + "?type=tests.split_fails", {
        "job_type": "tests.split_fails", "_preview": "Preview", "params-partitions": "2"}, follow=True)
    assert "Preview failed: RuntimeError: the split cannot run" in preview.content.decode()
    response = start_post(client, "tests.split_fails", {"partitions": "2"})
    assert response.status_code == 200
    assert "Cannot start: the plan cannot be made (RuntimeError: the split cannot run)" in response.content.decode()
    assert row_counts() == (0, 0, 0, 0)


# Schedules: invalid cron, unknown type, invalid params, a name in use -----------------------------------------


def schedule_rows() -> tuple[int, ...]:
    from partitions.models import JobSchedule, ScheduleEvent

    return (*row_counts(), JobSchedule.objects.count(), ScheduleEvent.objects.count())


@pytest.mark.parametrize(("args", "expected"), [
    (["billing.send_invoices", "--param", "period=2026-11", "--cron", "0 25 * * *"], "cron: Enter a valid"),
    (["billing.send_invoices", "--param", "period=2026-11", "--cron", "* * *"], "cron: Enter a valid"),
    (["billing.nope", "--cron", "0 2 * * *"], "unknown job type 'billing.nope'"),
    (["billing.send_invoices", "--param", "period=26-11", "--cron", "0 2 * * *"], "period: Enter a month"),
    (["billing.send_invoices", "--param", "bogus=1", "--every", "5m"], "unknown bogus"),
    (["billing.send_invoices", "--param", "period=2026-11", "--every", "5m", "--tz", "Mars/Base"], "Unknown time zone"),
    (["billing.send_invoices", "--param", "period=2026-11", "--every", "5x"], "expected an interval"),
    (["billing.send_invoices", "--param", "period=2026-11", "--every", "5m", "--deadline", "+0m"], "deadline"),
    (["billing.send_invoices", "--param", "period=2026-11", "--every", "5m", "--max-parallel", "-3"],
     "max_parallel"),
])
def test_a_bad_schedule_is_refused_by_the_cli_in_one_line_and_writes_nothing(args, expected):
    before = schedule_rows()
    code, _, err = cli("schedule", *args, "--name", "nightly")
    assert_refused_in_one_line(code, err, expected)
    assert schedule_rows() == before


def test_a_schedule_name_in_use_is_refused_by_the_cli_and_the_first_one_stays():
    assert cli("schedule", "billing.send_invoices", "--param", "period=2026-11", "--cron", "0 2 * * *",
               "--name", "nightly")[0] == 0
    before = schedule_rows()
    code, _, err = cli("schedule", "billing.send_invoices", "--param", "period=2026-12", "--every", "5m",
                       "--name", "nightly")
    assert_refused_in_one_line(code, err, "schedule name 'nightly' is already in use")
    assert schedule_rows() == before


@pytest.mark.parametrize("command", ["unschedule", "schedule-run", "schedule-pause", "schedule-resume",
                                     "schedule-show"])
def test_an_unknown_schedule_is_one_line(command):
    before = schedule_rows()
    code, _, err = cli(command, "nope")
    assert_refused_in_one_line(code, err, "schedule 'nope' does not exist")
    assert schedule_rows() == before
