"""The operators' CLI, `manage.py jobs …`, on the real test database: every subcommand in text and --json form,
--dry-run writing nothing, --wait/--watch exit codes, and bad input refused with one line and no writes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone
from django_q.models import OrmQ

from opsapp.billing.models import Subscription
from partitions.management.commands import jobs as jobs_command
from partitions.models import Job, JobEvent, JobSample, Partition, SubJob
from partitions.operations import services
from partitions.worker import steps
from tests.factories import make_job, make_partition
from tests.support import planned_job, run_to_end, seed, started_job, wait_for, year_ahead

pytestmark = pytest.mark.usefixtures("no_dispatcher")

#: Test process clock vs database clock, when checking a projected finish.
ETA_CLOCK_SLACK = timedelta(seconds=4)
#: 158 remaining items at 1 item/s.
REMAINING_AT_ONE_PER_S = timedelta(minutes=2, seconds=38)

REPO = Path(__file__).resolve().parent.parent

#: What `--json` prints for one job (status, list, cancel, pause, resume, --wait/--watch).
SUMMARY_KEYS = {
    "id", "type", "status", "params", "error", "created_at", "finished_at", "max_parallel", "deadline",
    "partitions", "partitions_total", "items_total", "items_done", "items_failed", "items_skipped", "live_leases",
    "percent", "items_per_second", "eta", "workers_needed", "rate_source", "eta_seconds", "meets_deadline",
    "per_worker_rate", "throttle", "splits", "limited_by", "rate_needed", "effective_items_per_second", "held",
    "verdict", "fleet_workers", "words",
}


def jobs(*args: str) -> tuple[str, str]:
    """Run `manage.py jobs ARGS` in this process; (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("jobs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def jobs_json(*args: str):
    out, _ = jobs(*args, "--json")
    return json.loads(out)


def rows() -> dict[str, int]:
    """Row counts of every table the command could write to (django-q2's queue included)."""
    return {model.__name__: model.objects.count() for model in (Job, Partition, SubJob, JobEvent, JobSample, OrmQ)}


def refused(*args: str) -> CommandError:
    """Run a command that must fail: one line, non-zero exit code, and nothing written."""
    before = rows()
    with pytest.raises(CommandError) as caught:
        jobs(*args)
    assert rows() == before, "bad input wrote something"
    message = str(caught.value)
    assert message.strip() and "\n" not in message
    assert caught.value.returncode != 0
    return caught.value


def succeeded_job(partitions: int = 2) -> Job:
    job = run_to_end(planned_job("tests.bump_range", {"partitions": partitions}))
    assert job.status == "succeeded", job.error
    return job


def failed_job() -> Job:
    """Both partitions crash in every batch until their attempts run out."""
    job = run_to_end(planned_job("tests.controlled", {"action": "crash", "partitions": 2}))
    assert job.status == "failed", job.status
    return job


def cancelled_job() -> Job:
    job = planned_job("tests.bump_range", {"partitions": 2})
    services.job_cancel(job.pk, actor="test", reason="not needed")
    job.refresh_from_db()
    return job


# types ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_types_lists_every_registered_job_type_with_its_params():
    out, _ = jobs("types")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert {"tests.bump_range", "tests.mark_modulo", "billing.migrate_subscriptions"} <= set(lines)
    assert lines["tests.bump_range"].split(None, 1)[1] == "partitions, sleep_ms"
    assert lines["tests.mark_modulo"].split(None, 1)[1] == "buckets"


@pytest.mark.django_db
def test_types_json_maps_each_type_to_its_label_and_param_field_classes():
    types = jobs_json("types")
    assert types["tests.bump_range"] == {"label": "", "params": {"partitions": "IntegerField",
                                                                  "sleep_ms": "IntegerField"}}
    assert types["billing.migrate_subscriptions"]["label"] == "Migrate subscriptions of changed products"
    assert types["billing.migrate_subscriptions"]["params"]["since"] == "DateTimeField"


# start ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_creates_a_pending_job_with_cleaned_params_and_schedules_its_planning(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        out, _ = jobs("start", "tests.bump_range", "--param", "partitions=3")
    job = Job.objects.get()
    assert out.strip() == f"job {job.pk} started: tests.bump_range"
    assert job.status == "pending" and job.params["partitions"] == 3 and job.created_by is None
    created = JobEvent.objects.get(job=job)
    assert (created.type, created.actor) == ("job_created", "cli")
    assert len(callbacks) == 1, "planning is dispatched after the commit"
    assert not Partition.objects.exists(), "start does not plan in the CLI process"


@pytest.mark.django_db
def test_start_json_prints_the_job_summary_marked_as_created():
    summary = jobs_json("start", "tests.bump_range", "--param", "partitions=2", "--param", "sleep_ms=5")
    assert set(summary) == SUMMARY_KEYS | {"created"}
    job = Job.objects.get()
    assert summary["created"] is True
    assert (summary["id"], summary["type"], summary["status"]) == (job.pk, "tests.bump_range", "pending")
    assert summary["params"] == {"partitions": 2, "sleep_ms": 5}
    assert summary["partitions"] == {} and summary["partitions_total"] == 0
    assert (summary["items_total"], summary["items_done"], summary["items_failed"]) == (0, 0, 0)
    assert summary["items_per_second"] == 0 and summary["eta"] is None, "nothing planned: no projection"


@pytest.mark.django_db
def test_start_passes_max_parallel_priority_deadline_and_dedupe_key_to_the_job():
    year = year_ahead()
    summary = jobs_json("start", "tests.bump_range", "--param", "partitions=2", "--max-parallel", "3",
                        "--priority", "7", "--deadline", f"{year}-01-02T03:04:05+02:00", "--dedupe-key", "nightly")
    job = Job.objects.get()
    assert (job.max_parallel, job.priority, job.dedupe_key) == (3, 7, "nightly")
    assert job.deadline == datetime(year, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert summary["max_parallel"] == 3
    assert datetime.fromisoformat(summary["deadline"]) == job.deadline


@pytest.mark.django_db
def test_a_deadline_without_an_offset_is_taken_in_the_current_time_zone():
    year = year_ahead()
    jobs("start", "tests.bump_range", "--deadline", f"{year}-06-01T12:00")
    deadline = Job.objects.get().deadline
    assert deadline == timezone.make_aware(datetime(year, 6, 1, 12, 0))


@pytest.mark.django_db
def test_start_with_the_dedupe_key_of_an_active_job_returns_that_job_and_creates_nothing():
    first = jobs_json("start", "tests.bump_range", "--dedupe-key", "nightly")
    before = rows()
    out, _ = jobs("start", "tests.bump_range", "--dedupe-key", "nightly")
    assert out.strip() == f"job {first['id']} already active (dedupe key): tests.bump_range"
    again = jobs_json("start", "tests.bump_range", "--dedupe-key", "nightly")
    assert (again["id"], again["created"]) == (first["id"], False)
    assert rows() == before


@pytest.mark.django_db
def test_start_dry_run_prints_each_planned_range_with_bounds_and_estimated_rows_and_writes_nothing(
        django_capture_on_commit_callbacks):
    seed(subscriptions=200)
    before = rows()
    with django_capture_on_commit_callbacks() as callbacks:
        out, _ = jobs("start", "tests.bump_range", "--param", "partitions=4", "--dry-run")
    assert rows() == before and not callbacks, "a dry run writes and enqueues nothing"
    *plan, total, estimate = out.strip().splitlines()
    assert estimate == "estimated duration: no past runs of this job type yet: no estimated duration"
    assert total == "4 partitions, 200 estimated items (dry run: nothing written)"
    assert len(plan) == 4
    for seq, line in enumerate(plan):
        assert line.split()[:2] == [str(seq), "range"] and line.endswith("~50 items")
    bounds = [line.split(None, 2)[2].rsplit("~", 1)[0].strip() for line in plan]  # as the admin words them
    boundary = Subscription.objects.order_by("created_at", "id")[50]
    assert bounds[0].startswith("[(-inf), ("), "the first range is open below"
    first_upper = bounds[0].removeprefix("[(-inf), ").removesuffix(")")
    assert first_upper.endswith(f", {boundary.pk})"), "it ends at the (created_at, id) of the 51st row"
    assert bounds[1].startswith(f"[{first_upper}, "), "the next range starts where the first ended"
    assert bounds[-1].endswith(", (+inf))"), "the last range is open above"


@pytest.mark.django_db
def test_start_dry_run_json_lists_the_planned_partitions_and_writes_nothing():
    seed(subscriptions=200)
    before = rows()
    result = jobs_json("start", "tests.bump_range", "--param", "partitions=4", "--dry-run")
    assert rows() == before
    assert result["dry_run"] is True
    parts = result["partitions"]
    assert [p["seq"] for p in parts] == [0, 1, 2, 3]
    assert {p["kind"] for p in parts} == {"range"}
    assert [p["estimated_items"] for p in parts] == [50, 50, 50, 50]
    assert parts[0]["lower"] is None and parts[-1]["upper"] is None
    for left, right in pairwise(parts):
        assert left["upper"] == right["lower"], "ranges are contiguous"
    boundary = Subscription.objects.order_by("created_at", "id")[50]
    assert parts[0]["upper"][1] == boundary.pk, "bounds are (created_at, id) keys"


@pytest.mark.django_db
def test_start_dry_run_of_a_modulo_split_shows_the_bucket_of_each_partition():
    seed(subscriptions=0, events=90)
    before = rows()
    out, _ = jobs("start", "tests.mark_modulo", "--param", "buckets=3", "--dry-run")
    assert rows() == before
    lines = out.strip().splitlines()
    assert [line.split("~")[0].split(None, 2)[2].strip() for line in lines[:3]] == [
        "id % 3 = 0", "id % 3 = 1", "id % 3 = 2"]
    assert lines[-2] == "3 partitions, 90 estimated items (dry run: nothing written)"
    result = jobs_json("start", "tests.mark_modulo", "--param", "buckets=3", "--dry-run")
    assert [(p["modulus"], p["remainder"]) for p in result["partitions"]] == [(3, 0), (3, 1), (3, 2)]
    assert sum(p["estimated_items"] for p in result["partitions"]) == 90


def _drive_on_first_sleep(monkeypatch, finish) -> None:
    """Make the command's poll sleep drive the job it follows (no worker runs inside call_command)."""
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        assert len(calls) < 5, "the command kept polling after the job ended"
        if len(calls) == 1:
            finish(Job.objects.latest("id"))

    monkeypatch.setattr(jobs_command, "sleep_for", sleep)


@pytest.mark.django_db
def test_start_wait_shows_progress_lines_until_the_job_succeeds_and_returns_normally(monkeypatch):
    seed(subscriptions=120)
    _drive_on_first_sleep(monkeypatch, lambda job: run_to_end(steps.job_plan(job.pk, worker_id="planner")))
    out, err = jobs("start", "tests.bump_range", "--param", "partitions=3", "--wait")
    job = Job.objects.get()
    assert job.status == "succeeded"
    assert out.strip() == f"job {job.pk} succeeded: 120/120 items handled, 0 failed"
    started, *progress = err.strip().split("\n")
    assert started == f"job {job.pk} started: tests.bump_range"
    assert "\r" not in err, "no carriage returns when the command's stderr is not a terminal"
    assert len(progress) == 2
    assert progress[0].startswith("[" + "." * 30 + "]   0.0%") and progress[0].endswith("pending, 0 leases, 0 failed")
    assert progress[-1].startswith("[" + "#" * 30 + "] 100.0%  120/120 items")
    assert progress[-1].endswith("succeeded, 0 leases, 0 failed")


@pytest.mark.django_db
def test_start_wait_exits_with_code_one_when_the_job_ends_cancelled(monkeypatch):
    seed(subscriptions=40)
    _drive_on_first_sleep(monkeypatch, lambda job: services.job_cancel(job.pk, actor="someone else"))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("jobs", "start", "tests.bump_range", "--wait", "--json", stdout=out, stderr=err)
    assert caught.value.returncode == 1
    job = Job.objects.get()
    assert str(caught.value) == f"job {job.pk} ended cancelled"
    summary = json.loads(out.getvalue())
    assert (summary["status"], summary["error"]) == ("cancelled", "")
    assert err.getvalue().strip().splitlines()[-1].endswith("cancelled, 0 leases, 0 failed")


# list -----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_recent_jobs_newest_first_with_status_and_progress():
    seed(subscriptions=60)
    done = succeeded_job()
    waiting = started_job("tests.bump_range", {"partitions": 2})
    out, _ = jobs("list")
    header, *lines = out.strip().splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "DONE", "ITEMS", "FAILED"]
    assert [int(line.split()[0]) for line in lines] == [waiting.pk, done.pk]
    assert lines[0].split()[1:4] == ["tests.bump_range", "pending", "0.0%"]
    assert lines[1].split()[1:4] == ["tests.bump_range", "succeeded", "100.0%"]
    assert lines[1].split()[4:] == ["60", "0"]


@pytest.mark.django_db
def test_list_status_filters_the_jobs_and_json_gives_one_summary_each():
    seed(subscriptions=30)
    done = succeeded_job()
    failed = make_job(status="failed", error="boom")
    make_job(status="paused")
    out, _ = jobs("list", "--status", "failed")
    assert [int(line.split()[0]) for line in out.strip().splitlines()[1:]] == [failed.pk]
    summaries = jobs_json("list", "--status", "succeeded")
    assert [s["id"] for s in summaries] == [done.pk]
    assert set(summaries[0]) == SUMMARY_KEYS
    assert summaries[0]["items_done"] == 30 and summaries[0]["partitions"] == {"succeeded": 2}
    assert len(jobs_json("list")) == 3
    assert len(jobs_json("list", "--limit", "2")) == 2


@pytest.mark.django_db
def test_list_says_so_when_no_job_matches():
    make_job(status="running")
    assert jobs("list", "--status", "cancelled")[0].strip() == "no jobs"
    assert jobs_json("list", "--status", "cancelled") == []


# status ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_prints_one_progress_line_of_a_finished_job():
    seed(subscriptions=80)
    job = succeeded_job(partitions=4)
    out, _ = jobs("status", str(job.pk))
    line = out.strip()
    assert "\n" not in line
    assert line.startswith("[" + "#" * 30 + "] 100.0%  80/80 items")
    assert line.endswith("succeeded, 0 leases, 0 failed")


@pytest.mark.django_db
def test_status_json_of_a_finished_job_counts_partitions_and_items_and_has_no_eta():
    seed(subscriptions=80)
    job = succeeded_job(partitions=4)
    summary = jobs_json("status", str(job.pk))
    assert set(summary) == SUMMARY_KEYS | {"statistics"}
    assert summary["statistics"]["partitions"]["count"] == 4 and summary["statistics"]["items_handled"] == 80
    assert (summary["id"], summary["status"], summary["error"]) == (job.pk, "succeeded", "")
    assert summary["partitions"] == {"succeeded": 4} and summary["partitions_total"] == 4
    assert (summary["items_total"], summary["items_done"], summary["items_failed"]) == (80, 80, 0)
    assert summary["percent"] == 100.0 and summary["live_leases"] == 0
    assert summary["items_per_second"] > 0, "average rate over the job's run"
    assert summary["eta"] is None
    assert datetime.fromisoformat(summary["finished_at"]) == job.finished_at.replace(
        microsecond=job.finished_at.microsecond // 1000 * 1000)


@pytest.mark.django_db
def test_status_json_of_a_running_job_gives_counts_by_partition_status_rate_from_samples_and_eta():
    now = timezone.now()
    job = make_job(status="running", planned_at=now - timedelta(minutes=10), started_at=now - timedelta(minutes=10))
    make_partition(job, seq=0, status="succeeded", estimated_items=100, done_items=100)
    make_partition(job, seq=1, status="running", estimated_items=100, done_items=40, failed_items=2)
    make_partition(job, seq=2, status="pending", estimated_items=100)
    make_partition(job, seq=3, status="failed", estimated_items=0)
    JobSample.objects.create(job=job, taken_at=now - timedelta(seconds=120), done_items=22, failed_items=0,
                             live_leases=1)
    JobSample.objects.create(job=job, taken_at=now - timedelta(seconds=60), done_items=80, failed_items=2,
                             live_leases=1)
    asked_at = timezone.now()
    summary = jobs_json("status", str(job.pk))
    assert summary["partitions"] == {"succeeded": 1, "running": 1, "pending": 1, "failed": 1}
    assert summary["partitions_total"] == 4 and summary["live_leases"] == 1
    assert (summary["items_total"], summary["items_done"], summary["items_failed"]) == (300, 140, 2)
    assert summary["percent"] == round(100 * 142 / 300, 2)
    # From the window's first sample (22 handled, 120 s ago) to the live counters (142 handled).
    assert summary["items_per_second"] == pytest.approx(1.0, abs=0.02)
    # The projection is the database clock plus 158 remaining items at 1 item/s (clock skew allowed).
    projected = datetime.fromisoformat(summary["eta"])
    expected = asked_at + REMAINING_AT_ONE_PER_S
    assert abs(projected - expected) <= ETA_CLOCK_SLACK

    line = jobs("status", str(job.pk))[0].strip()
    assert " 47.3%  142/300 items  1/s  ETA 15" in line and "running, 1 lease, 2 failed" in line


@pytest.mark.parametrize("status", ["pending", "paused"])
@pytest.mark.django_db
def test_status_json_gives_no_eta_for_a_job_that_is_not_running(status):
    job = make_job(status=status, planned_at=timezone.now() - timedelta(minutes=1))
    if status == "paused":
        make_partition(job, estimated_items=10)
    summary = jobs_json("status", str(job.pk))
    assert summary["status"] == status and summary["eta"] is None


@pytest.mark.django_db
def test_status_watch_on_a_succeeded_job_prints_the_final_line_and_returns_normally():
    seed(subscriptions=30)
    job = succeeded_job()
    out, err = jobs("status", str(job.pk), "--watch")
    assert out.strip() == f"job {job.pk} succeeded: 30/30 items handled, 0 failed"
    assert err.count("\n") == 1 and "100.0%" in err and "succeeded" in err
    summary = jobs_json("status", str(job.pk), "--watch")
    assert set(summary) == SUMMARY_KEYS and summary["status"] == "succeeded"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
def test_watch_redraws_one_line_with_carriage_returns_only_when_its_own_stderr_is_a_terminal(monkeypatch):
    seed(subscriptions=20)
    job = succeeded_job()
    monkeypatch.setattr(sys, "stderr", Terminal())  # the operator's terminal, while the command's stderr is a file
    redirected = io.StringIO()
    call_command("jobs", "status", str(job.pk), "--watch", stdout=io.StringIO(), stderr=redirected)
    assert "\r" not in redirected.getvalue() and redirected.getvalue().endswith("succeeded, 0 leases, 0 failed\n")
    terminal = Terminal()
    call_command("jobs", "status", str(job.pk), "--watch", stdout=io.StringIO(), stderr=terminal)
    assert terminal.getvalue().startswith("\r\x1b[K[") and terminal.getvalue().endswith("0 failed\n")


@pytest.mark.parametrize("make", [failed_job, cancelled_job], ids=["failed", "cancelled"])
@pytest.mark.django_db
def test_status_watch_on_a_failed_or_cancelled_job_exits_with_code_one(make):
    seed(subscriptions=30)
    job = make()
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("jobs", "status", str(job.pk), "--watch", stdout=out, stderr=err)
    assert caught.value.returncode == 1
    assert str(caught.value) == f"job {job.pk} ended {job.status}"
    assert out.getvalue().strip() == f"job {job.pk} {job.status}: 0/30 items handled, 0 failed \u2014 {job.error}"


# retry ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retry_moves_failed_partitions_back_to_pending_and_reopens_the_failed_job():
    seed(subscriptions=30)
    job = failed_job()
    out, _ = jobs("retry", str(job.pk))
    assert out.strip() == f"job {job.pk}: 2 failed partitions retried"
    job.refresh_from_db()
    assert job.status == "running" and job.error == ""
    assert sorted(job.partitions.values_list("status", "attempts")) == [("pending", 0), ("pending", 0)]
    assert JobEvent.objects.filter(job=job, type="partition_retried", actor="cli").count() == 2
    assert JobEvent.objects.filter(job=job, type="job_reopened", actor="cli").exists()
    assert jobs_json("retry", str(job.pk)) == {"job": job.pk, "partitions_retried": 0}


@pytest.mark.django_db
def test_retry_subjobs_moves_failed_items_to_a_retry_partition_and_the_job_then_succeeds():
    job = run_to_end(planned_job("tests.items_serial", {"count": 6, "chunk_size": 3, "fail_every": 3}))
    assert job.status == "failed" and job.subjobs.filter(status="failed").count() == 2
    out, _ = jobs("retry", str(job.pk), "--subjobs")
    assert out.strip() == f"job {job.pk}: 2 failed sub-jobs retried"
    job.refresh_from_db()
    assert job.status == "running"
    retries = job.partitions.filter(kind="retry")
    assert set(retries.values_list("status", flat=True)) == {"pending"}, "one retry partition per source partition"
    assert SubJob.objects.filter(partition__in=retries, status="pending").count() == 2
    assert run_to_end(job).status == "succeeded"
    assert job.subjobs.filter(status="succeeded").count() == 6


@pytest.mark.django_db
def test_retry_subjobs_json_reports_how_many_were_retried():
    job = run_to_end(planned_job("tests.items_serial", {"count": 4, "chunk_size": 2, "fail_every": 2}))
    assert job.status == "failed"
    assert jobs_json("retry", str(job.pk), "--subjobs") == {"job": job.pk, "subjobs_retried": 2}


# cancel, pause, resume ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_cancels_the_job_and_its_pending_partitions():
    seed(subscriptions=30)
    job = planned_job("tests.bump_range", {"partitions": 3})
    out, _ = jobs("cancel", str(job.pk))
    assert out.strip() == f"job {job.pk} cancelled"
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error == "cancelled from the CLI" and job.finished_at
    assert set(job.partitions.values_list("status", flat=True)) == {"cancelled"}
    assert JobEvent.objects.get(job=job, type="job_cancelled").actor == "cli"


@pytest.mark.django_db
def test_cancel_json_prints_the_cancelled_job_summary():
    seed(subscriptions=30)
    job = planned_job("tests.bump_range", {"partitions": 3})
    summary = jobs_json("cancel", str(job.pk))
    assert set(summary) == SUMMARY_KEYS
    assert summary["status"] == "cancelled" and summary["partitions"] == {"cancelled": 3}
    assert summary["eta"] is None


@pytest.mark.django_db
def test_pause_then_resume_moves_a_running_job_and_records_both_events(django_capture_on_commit_callbacks):
    seed(subscriptions=30)
    job = planned_job("tests.bump_range", {"partitions": 2})
    assert jobs("pause", str(job.pk))[0].strip() == f"job {job.pk} paused"
    job.refresh_from_db()
    assert job.status == "paused" and job.paused_at is not None
    with django_capture_on_commit_callbacks() as callbacks:
        assert jobs("resume", str(job.pk))[0].strip() == f"job {job.pk} resumed"
    assert len(callbacks) == 1, "resuming dispatches drains"
    job.refresh_from_db()
    assert job.status == "running" and job.paused_at is None
    types = list(JobEvent.objects.filter(job=job, actor="cli").order_by("id").values_list("type", flat=True))
    assert types == ["job_paused", "job_resumed"]


@pytest.mark.django_db
def test_pause_and_resume_json_print_the_job_summary():
    seed(subscriptions=30)
    job = planned_job("tests.bump_range", {"partitions": 2})
    paused = jobs_json("pause", str(job.pk))
    assert set(paused) == SUMMARY_KEYS and paused["status"] == "paused" and paused["eta"] is None
    assert paused["partitions"] == {"pending": 2} and paused["items_total"] == 30
    resumed = jobs_json("resume", str(job.pk))
    assert resumed["status"] == "running"
    assert resumed["items_per_second"] == 0 and resumed["eta"] is None, "nothing done yet: no projection"


# events ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_events_prints_the_timeline_oldest_first_with_actor_partition_and_data():
    seed(subscriptions=20)
    job = succeeded_job(partitions=2)
    out, _ = jobs("events", str(job.pk))
    lines = out.strip().splitlines()
    events = list(JobEvent.objects.filter(job=job).order_by("id"))
    assert len(lines) == len(events)
    assert [line.split()[3] for line in lines] == [e.type for e in events]  # after "2026-12-02 10:16:49 UTC"
    assert lines[0].split()[3:5] == ["job_created", "test"]
    claimed = next(e for e in events if e.type == "partition_claimed")
    assert f"p{claimed.partition_id}" in lines[events.index(claimed)]
    assert lines[-1].split()[3] == "job_succeeded" and "items done: 20" in lines[-1]


@pytest.mark.django_db
def test_events_json_gives_rows_oldest_first_and_limit_keeps_the_newest():
    job = started_job("tests.bump_range", {"partitions": 2})
    jobs("cancel", str(job.pk))
    rows_ = jobs_json("events", str(job.pk))
    assert [(r["type"], r["actor"], r["partition"]) for r in rows_] == [
        ("job_created", "test", None), ("job_cancelled", "cli", None)]
    assert set(rows_[0]) == {"at", "type", "actor", "partition", "data"}
    assert rows_[1]["data"] == {"reason": "cancelled from the CLI"}
    assert datetime.fromisoformat(rows_[0]["at"]) <= datetime.fromisoformat(rows_[1]["at"])
    assert [r["type"] for r in jobs_json("events", str(job.pk), "--limit", "1")] == ["job_cancelled"]


# bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["start", "nope.nothing"], "unknown job type 'nope.nothing'", id="unknown type"),
    pytest.param(["start", "nope.nothing", "--dry-run"], "unknown job type 'nope.nothing'",
                 id="unknown type in a dry run"),
    pytest.param(["start", "tests.bump_range", "--param", "partitions=0"],
                 "invalid params for tests.bump_range: partitions: Ensure this value is greater than or equal to 1.",
                 id="param value out of range"),
    pytest.param(["start", "tests.bump_range", "--param", "partitions=many", "--dry-run"],
                 "invalid params for tests.bump_range: partitions: Enter a whole number.",
                 id="param value of the wrong type in a dry run"),
    pytest.param(["start", "tests.mark_modulo"],
                 "invalid params for tests.mark_modulo: buckets: This field is required.", id="missing required param"),
    pytest.param(["start", "tests.bump_range", "--param", "partitons=8"],
                 "invalid params for tests.bump_range: unknown partitons", id="misspelled param name"),
    pytest.param(["start", "tests.bump_range", "--param", "partitions"],
                 "argument --param: expected key=value, got 'partitions'", id="param without an equals sign"),
    pytest.param(["start", "tests.bump_range", "--param", "=3"], "argument --param: expected key=value, got '=3'",
                 id="param without a key"),
    pytest.param(["start", "tests.bump_range", "--deadline", "tomorrow"],
                 "--deadline is not an ISO 8601 date-time or a time from now such as +30m: 'tomorrow'",
                 id="deadline that is not a date"),
    pytest.param(["start", "tests.bump_range", "--deadline", "2030-13-45T25:00"],
                 "--deadline is not an ISO 8601 date-time or a time from now such as +30m: '2030-13-45T25:00'",
                 id="deadline that does not exist"),
    pytest.param(["start", "tests.bump_range", "--max-parallel", "-1"],
                 "max_parallel: Enter a whole number from 0 to 100,000",
                 id="negative max parallel"),
    pytest.param(["start"], "the following arguments are required: type_name", id="start without a type"),
    pytest.param(["list", "--status", "done"], "argument --status: invalid choice 'done'", id="unknown status"),
    pytest.param(["list", "--limit", "-1"], "argument --limit: expected a whole number from 1 to 10,000",
                 id="negative list limit"),
    pytest.param(["events", "1", "--limit", "0"], "argument --limit: expected a whole number from 1 to 10,000",
                 id="zero events limit"),
    pytest.param(["status", "abc"], "argument job_id: not a job id: 'abc'", id="job id that is not a number"),
    pytest.param(["explode"], "unknown subcommand 'explode'", id="unknown subcommand"),
])
@pytest.mark.django_db
def test_bad_input_exits_non_zero_with_one_clear_line_and_writes_nothing(args, message):
    seed(subscriptions=20, events=5)
    assert message in str(refused(*args))


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--watch"], ["retry"], ["retry", "--subjobs"], ["cancel"], ["pause"], ["resume"],
    ["events"],
], ids=" ".join)
@pytest.mark.django_db
def test_an_unknown_job_id_is_refused_by_every_job_subcommand(args):
    make_job(status="running")
    missing = Job.objects.latest("id").pk + 1000
    error = refused(args[0], str(missing), *args[1:])
    assert str(error) == f"job {missing} does not exist"


ILLEGAL = [
    pytest.param("running", ["resume"], "job {id} is already running", id="resume running"),
    pytest.param("failed", ["resume"], "job {id} has finished (failed); only a paused job can be resumed",
                 id="resume failed (would reopen it without retrying anything)"),
    pytest.param("pending", ["resume"], "job {id} is pending; only a paused job can be resumed", id="resume pending"),
    pytest.param("cancelled", ["pause"], "job {id} has finished (cancelled); only a running job can be paused",
                 id="pause cancelled"),
    pytest.param("paused", ["pause"], "job {id} is already paused", id="pause paused"),
    pytest.param("pending", ["pause"], "job {id} is pending; only a running job can be paused", id="pause pending"),
    pytest.param("succeeded", ["cancel"], "job {id} has finished (succeeded); only a job that has not ended can be "
                 "cancelled", id="cancel succeeded"),
    pytest.param("cancelled", ["cancel"], "job {id} is already cancelled", id="cancel cancelled"),
    pytest.param("succeeded", ["retry"], "job {id} has finished (succeeded); nothing failed to retry",
                 id="retry succeeded"),
    pytest.param("pending", ["retry"], "job {id} is pending; nothing has failed yet", id="retry pending"),
    pytest.param("cancelled", ["retry", "--subjobs"],
                 "job {id} has finished (cancelled); a cancelled job cannot be retried: re-run it instead",
                 id="retry subjobs of cancelled"),
]


@pytest.mark.parametrize(("status", "action", "message"), ILLEGAL)
@pytest.mark.django_db
def test_an_action_illegal_in_the_jobs_state_is_refused_and_changes_nothing(status, action, message):
    job = make_job(status=status)
    make_partition(job, status="failed" if status in {"failed", "running"} else "pending")
    error = refused(action[0], str(job.pk), *action[1:])
    assert str(error) == message.format(id=job.pk)
    job.refresh_from_db()
    assert job.status == status


# real processes: exit codes and stderr --------------------------------------------------------------------------


@pytest.fixture
def cli_process(db_url):
    """Run `manage.py jobs …` in a real process against the test database."""
    # LOG_LEVEL: django-q2 logs "Enqueued …" at INFO when `start` dispatches planning; keep stderr the command's.
    env = {**os.environ, "DATABASE_URL": db_url, "PARTITIONS_JOB_MODULES": "tests.jobtypes", "LOG_LEVEL": "WARNING"}

    def run(*args: str, wait: bool = True):
        command = [sys.executable, "manage.py", "jobs", *args]
        if not wait:
            return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    return run


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_status_watch_in_a_real_process_exits_zero_for_a_succeeded_job_and_one_for_failed_or_cancelled(cli_process):
    seed(subscriptions=30)
    ended = {"succeeded": succeeded_job(), "failed": failed_job(), "cancelled": cancelled_job()}
    for status, job in ended.items():
        result = cli_process("status", str(job.pk), "--watch", "--json")
        assert result.returncode == (0 if status == "succeeded" else 1), result.stderr
        assert json.loads(result.stdout)["status"] == status
        if status != "succeeded":  # the summary line on stdout says how it ended: no CommandError line under it
            assert "CommandError" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bad_input_in_a_real_process_prints_one_line_on_stderr_exits_one_and_writes_nothing(cli_process):
    seed(subscriptions=20)
    running = make_job(status="running")
    cases = [
        (["start", "nope.nothing"], "CommandError: unknown job type 'nope.nothing'"),
        (["start", "tests.bump_range", "--param", "partitions=x"],
         "CommandError: invalid params for tests.bump_range: partitions: Enter a whole number."),
        (["start", "tests.bump_range", "--deadline", "2030-02-30T00:00"],
         "CommandError: --deadline is not an ISO 8601 date-time or a time from now such as +30m: '2030-02-30T00:00'"),
        (["resume", str(running.pk)], f"CommandError: job {running.pk} is already running"),
        (["cancel", str(running.pk + 1000)], f"CommandError: job {running.pk + 1000} does not exist"),
    ]
    before = rows()
    for args, line in cases:
        result = cli_process(*args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n"), args
    assert rows() == before
    assert Job.objects.get().status == "running"


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["succeeded", "cancelled"])
@pytest.mark.django_db(transaction=True)
def test_start_wait_in_a_real_process_follows_a_job_driven_here_and_exits_by_its_outcome(cli_process, outcome):
    seed(subscriptions=60)
    connections.close_all()
    proc = cli_process("start", "tests.bump_range", "--param", "partitions=3", "--wait", "--json", wait=False)
    try:
        wait_for(lambda: Job.objects.exists(), timeout=60, what="the command to create its job")
        job = Job.objects.get()
        if outcome == "succeeded":
            run_to_end(steps.job_plan(job.pk, worker_id="planner"))
        else:
            services.job_cancel(job.pk, actor="test", reason="changed my mind")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (0 if outcome == "succeeded" else 1), err
    summary = json.loads(out)
    assert summary["id"] == job.pk and summary["status"] == outcome
    lines = err.strip().splitlines()
    assert lines[0] == f"job {job.pk} started: tests.bump_range"
    assert lines[-1].endswith(f"{outcome}, 0 leases, 0 failed")  # the last progress line: no CommandError under it
    if outcome == "succeeded":
        assert summary["items_done"] == 60 and summary["partitions"] == {"succeeded": 3}
        assert set(Subscription.objects.values_list("product_version", flat=True)) == {2}
    else:
        assert "CommandError" not in err
