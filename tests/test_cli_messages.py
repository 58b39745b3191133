"""What the `jobs` CLI says to an operator: suggestions for mistyped names, one-line argument errors, state
conflicts in operator words (the admin says the same), --watch's last line, list headers, relative deadlines
and the dry run's estimate from past runs."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from partitions.models import Job, JobEvent
from tests.factories import make_job, make_partition
from tests.support import cli, documented_commands, planned_job, run_to_end, seed

pytestmark = pytest.mark.django_db


def rows() -> tuple[int, int]:
    return Job.objects.count(), JobEvent.objects.count()


def succeeded_job(partitions: int = 2) -> Job:
    job = run_to_end(planned_job("tests.bump_range", {"partitions": partitions}))
    assert job.status == "succeeded", job.error
    return job


# suggestions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "line"), [
    (["start", "billing.send_invoice"],
     "CommandError: unknown job type 'billing.send_invoice' (did you mean 'billing.send_invoices'?)"),
    (["start", "tests.bump_range", "--param", "partitons=3"],
     "CommandError: invalid params for tests.bump_range: unknown partitons (did you mean 'partitions'?); "
     "it takes partitions, sleep_ms"),
    (["schedule", "tests.bump_rang", "--name", "x", "--every", "5m"],
     "CommandError: unknown job type 'tests.bump_rang' (did you mean 'tests.bump_range'?)"),
], ids=["job type", "param", "job type of a schedule"])
def test_a_mistyped_name_is_refused_with_the_closest_known_one(args, line):
    before = rows()
    assert cli(*args) == (1, "", line + "\n")
    assert rows() == before


def test_a_name_close_to_nothing_gets_no_suggestion():
    code, _, err = cli("start", "zzzz.qqqq")
    assert (code, err) == (1, "CommandError: unknown job type 'zzzz.qqqq'\n")


def test_a_mistyped_subcommand_or_choice_names_the_closest_one():
    assert cli("strat") == (2, "", "manage.py jobs: error: unknown subcommand 'strat' (did you mean 'start'?) "
                                   "(see manage.py jobs --help)\n")
    code, _, err = cli("list", "--status", "runing")
    assert code == 2 and "invalid choice 'runing' (did you mean 'running'?); choose from pending," in err


# argument errors: one line each, never the usage --------------------------------------------------------------

ARGUMENT_ERRORS = [
    (["start", "tests.bump_range", "--param", "period", "2026-11"],
     "manage.py jobs start: error: argument --param: expected key=value, got 'period': write period=VALUE as one "
     "argument (see manage.py jobs start --help)"),
    (["start", "tests.bump_range", "--priority", "99999999999999999999"],
     "manage.py jobs start: error: argument --priority: '99999999999999999999' is too large: at most 18 digits "
     "(see manage.py jobs start --help)"),
    (["list", "--limit", "99999999999999999999"],
     "manage.py jobs list: error: argument --limit: expected a whole number from 1 to 10,000, got "
     "'99999999999999999999' (see manage.py jobs list --help)"),
    (["explode"], "manage.py jobs: error: unknown subcommand 'explode' (see manage.py jobs --help)"),
    (["retry"], "manage.py jobs retry: error: the following arguments are required: job_id "
                "(see manage.py jobs retry --help)"),
    ([], "manage.py jobs: error: the following arguments are required: subcommand (see manage.py jobs --help)"),
]


@pytest.mark.parametrize(("args", "line"), ARGUMENT_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_an_argument_error_is_one_line_pointing_to_help_and_writes_nothing(args, line):
    make_job(status="running")
    before = rows()
    assert cli(*args) == (2, "", line + "\n")
    assert rows() == before


def test_called_from_code_an_argument_error_is_a_command_error_not_an_exit():
    with pytest.raises(CommandError, match="argument --priority: '99999999999999999999' is too large"):
        call_command("jobs", "start", "tests.bump_range", "--priority", "99999999999999999999")


# state conflicts in operator words ------------------------------------------------------------------------------

CONFLICTS = [
    ("succeeded", ["set", "--max-parallel", "4"],
     "job {id} has finished (succeeded); max parallel and the deadline apply only before a job finalizes"),
    ("succeeded", ["retry"], "job {id} has finished (succeeded); nothing failed to retry"),
    ("succeeded", ["throttle", "--rate", "5"],
     "job {id} has finished (succeeded); the throttle applies only to jobs that have not ended"),
    ("finalizing", ["cancel"], "job {id} is finalizing; its work is done, it can no longer be cancelled"),
    ("cancelled", ["retry"], "job {id} has finished (cancelled); a cancelled job cannot be retried: re-run it instead"),
    ("paused", ["resume", "--json"], None),  # allowed: the control case
]


@pytest.mark.parametrize(("status", "args", "message"), CONFLICTS, ids=lambda v: v if isinstance(v, str) else None)
def test_a_state_conflict_says_what_the_job_is_and_what_applies(status, args, message):
    job = make_job(status=status)
    make_partition(job, status="succeeded" if status != "paused" else "pending")
    before = rows()
    code, out, err = cli(args[0], str(job.pk), *args[1:])
    if message is None:
        assert code == 0 and json.loads(out)["status"] == "running"
        return
    assert (code, out, err) == (1, "", f"CommandError: {message.format(id=job.pk)}\n")
    assert "cannot go from" not in err
    assert rows() == before


def test_retry_of_a_running_job_with_nothing_failed_says_so():
    job = make_job(status="running")
    make_partition(job, status="running")
    assert cli("retry", str(job.pk)) == (0, f"job {job.pk} has no failed partitions to retry\n", "")
    assert cli("retry", str(job.pk), "--subjobs") == (0, f"job {job.pk} has no failed sub-jobs to retry\n", "")


def test_the_admin_knob_says_the_same_as_the_cli_on_a_finished_job(admin_env, operator):
    job = make_job(status="succeeded")
    client = Client()
    client.force_login(operator)
    response = client.post(reverse("admin:partitions_job_knob", args=[job.pk]), {"max_parallel": "4"}, follow=True)
    assert (f"Cannot change the settings of job #{job.pk}: it has finished (succeeded); max parallel and the "
            "deadline apply only before a job finalizes.") in response.content.decode()


# --watch, list ----------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_clears_its_line_and_a_failed_job_ends_with_a_summary_and_exit_one_without_a_command_error():
    seed(subscriptions=30)
    job = run_to_end(planned_job("tests.controlled", {"action": "crash", "partitions": 2}))
    assert job.status == "failed"
    code, out, err = cli("status", str(job.pk), "--watch")
    assert code == 1
    assert out == f"job {job.pk} failed: 0/30 items handled, 0 failed \u2014 {job.error}\n"
    assert "CommandError" not in err and "Traceback" not in err
    terminal = Terminal()
    with pytest.raises(CommandError) as caught:  # called from code, the exit is still an error
        call_command("jobs", "status", str(job.pk), "--watch", stdout=io.StringIO(), stderr=terminal)
    assert caught.value.returncode == 1
    assert terminal.getvalue().startswith("\r\x1b[K[") and terminal.getvalue().endswith("\n")


def test_list_has_a_header_over_its_columns():
    seed(subscriptions=40)
    done = succeeded_job()
    code, out, _ = cli("list")
    header, line = out.splitlines()
    assert code == 0 and header.split() == ["ID", "TYPE", "STATUS", "DONE", "ITEMS", "FAILED"]
    assert line.split() == [str(done.pk), "tests.bump_range", "succeeded", "100.0%", "40", "0"]
    assert header.index("STATUS") == line.index("succeeded")
    assert cli("list", "--status", "failed") == (0, "no jobs\n", "")


# relative deadlines -------------------------------------------------------------------------------------------


def test_start_and_set_take_a_deadline_relative_to_now():
    seed(subscriptions=20)
    before = timezone.now()
    code, out, _ = cli("start", "tests.bump_range", "--deadline", "+30m", "--json")
    job = Job.objects.get(pk=json.loads(out)["id"])
    assert code == 0 and before + timedelta(minutes=30) <= job.deadline <= timezone.now() + timedelta(minutes=30)
    assert cli("set", str(job.pk), "--deadline", "+2h")[0] == 0
    job.refresh_from_db()
    assert before + timedelta(hours=2) <= job.deadline <= timezone.now() + timedelta(hours=2)
    code, _, err = cli("set", str(job.pk), "--deadline", "+2x")
    assert code == 1 and err == ("CommandError: --deadline is not an ISO 8601 date-time or a time from now such as "
                                 "+30m: '+2x'\n")


# the dry run's estimate -----------------------------------------------------------------------------------------


def test_a_dry_run_says_there_are_no_past_runs_then_estimates_from_them_with_the_deadline_check():
    seed(subscriptions=60)
    code, out, _ = cli("start", "tests.bump_range", "--dry-run")
    assert code == 0
    assert out.splitlines()[-1] == "estimated duration: no past runs of this job type yet: no estimated duration"
    succeeded_job()
    before = rows()
    # A rate limit far under the past pace binds: 60 items at 0.001 items/s is 60,000 s, whatever the pace.
    code, out, _ = cli("start", "tests.bump_range", "--dry-run", "--rate", "0.001", "--deadline", "+1h")
    last = out.splitlines()[-1]
    assert code == 0 and last.startswith("estimated duration: about 16h 40m at 0.001 items/s (the pace of the last "
                                         "1 succeeded run), finishing around ")
    assert last.endswith("; that misses the deadline by 15h 40m")
    code, out, _ = cli("start", "tests.bump_range", "--dry-run", "--rate", "0.001", "--deadline", "+1d", "--json")
    estimate = json.loads(out)["estimate"]
    assert (estimate["runs"], estimate["seconds"], estimate["meets_deadline"]) == (1, 60_000, True)
    assert rows() == before


# the docs' commands --------------------------------------------------------------------------------------------


def readme_commands(prefix: str) -> list[list[str]]:
    """The docs' `manage.py jobs PREFIX …` commands (README and docs/) as argv."""
    return [argv for _, argv in documented_commands(prefix)]


def test_the_readmes_starts_and_knob_changes_are_accepted_as_written_on_any_date():
    seed(subscriptions=40, events=20)
    starts = readme_commands("start")
    assert len(starts) >= 4 and any("--deadline" in args for args in starts)
    for args in starts:  # a dry run validates everything a start does (the deadline's range included)
        args = [a for a in args if a != "--wait"] + (["--dry-run"] if "--dry-run" not in args else [])
        code, _, err = cli(*args)
        assert code == 0, (args, err)
    job = make_job(status="running")
    knob_changes = readme_commands("set")
    assert knob_changes
    for args in knob_changes:
        code, _, err = cli(*[str(job.pk) if a == "JOB_ID" else a for a in args])
        assert code == 0, (args, err)


def test_a_bad_run_option_is_named_as_itself_not_as_params_of_run_options():
    seed(subscriptions=10)
    code, _, err = cli("start", "tests.bump_range", "--deadline", "2001-01-01T00:00:00Z")
    assert (code, err) == (1, "CommandError: invalid deadline: Enter a deadline in the future.\n")


def test_a_mistyped_schedule_name_is_refused_with_the_closest_one():
    seed(subscriptions=10)
    assert cli("schedule", "tests.bump_range", "--name", "nightly-invoices", "--every", "1d")[0] == 0
    assert cli("schedule-show", "nightly-invoice") == (
        1, "", "CommandError: schedule 'nightly-invoice' does not exist (did you mean 'nightly-invoices'?)\n")


def test_jobs_set_names_the_settings_as_the_admin_does():
    job = make_job(status="running", max_parallel=2)
    assert cli("set", str(job.pk), "--max-parallel", "0", "--deadline", "none") == (
        0, f"job {job.pk}: max parallel unlimited, deadline none\n", "")


def test_a_long_dry_run_lists_its_first_and_last_partitions_in_text_and_every_one_in_json():
    seed(subscriptions=60)
    code, out, _ = cli("start", "tests.bump_range", "--param", "partitions=30", "--dry-run")
    lines = out.splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines[:11]] == ["0", "1", "2", "3", "4", "…", "25", "26", "27", "28", "29"]
    assert lines[5].endswith("20 more partitions") and lines[11].startswith("30 partitions, 60 estimated items")
    code, out, _ = cli("start", "tests.bump_range", "--param", "partitions=30", "--dry-run", "--json")
    assert [row["seq"] for row in json.loads(out)["partitions"]] == list(range(30))
