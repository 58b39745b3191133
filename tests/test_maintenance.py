"""Tick duties, each on rows placed either side of its cut-off, and the recurring-run helper."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from partitions import tasks
from partitions.models import Job, JobEvent, JobSample
from partitions.worker import maintenance
from tests.factories import make_job, make_partition  # also registers the test job types

pytestmark = pytest.mark.django_db


def test_finalize_finished_jobs_finalizes_only_running_jobs_whose_partitions_are_all_terminal():
    done = make_job()
    make_partition(done, seq=0, status="succeeded")
    make_partition(done, seq=1, status="cancelled")
    busy = make_job()
    make_partition(busy, seq=0, status="succeeded")
    make_partition(busy, seq=1, status="running")
    assert maintenance.finalize_finished_jobs() == {"finalized": 1}
    finalized = Job.objects.get(pk=done.pk)
    # Finalized; and not "succeeded": the completion proof finds the keys the cancelled partition never processed.
    assert finalized.status == "failed" and finalized.error.startswith("verification failed: "), finalized.error
    assert Job.objects.get(pk=busy.pk).status == "running"


def test_sample_throughput_records_one_sample_per_running_job():
    running = make_job()
    make_partition(running, done_items=40, failed_items=2)
    make_job(status="paused")
    assert maintenance.sample_throughput() == {"sampled": 1}
    sample = JobSample.objects.get()
    assert (sample.job_id, sample.done_items, sample.failed_items, sample.live_leases) == (running.pk, 40, 2, 0)


def test_top_up_drains_only_for_running_jobs_with_claimable_work():
    claimable = make_job()
    make_partition(claimable)
    held = make_job()
    make_partition(held, status="running")
    later = make_job()
    make_partition(later, available_at=timezone.now() + timedelta(minutes=5))
    assert maintenance.top_up_drains() == {"jobs_topped_up": 1}


def test_restart_lost_steps_redispatches_stale_pending_jobs_and_expired_steps(django_capture_on_commit_callbacks):
    old = make_job(status="pending")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    make_job(status="pending")  # just created: its plan task is probably still queued
    lost_finalize = make_job(status="finalizing", step_expires_at=timezone.now() - timedelta(seconds=1))
    make_job(status="planning", step_expires_at=timezone.now() + timedelta(seconds=60))
    assert maintenance.restart_lost_steps() == {"plans_dispatched": 1, "refinalized": 1}
    # The plan task; tick runs the finalize step itself, and queues the notification sender after it.
    assert sorted(task.func() for task in OrmQ.objects.all()) == ["partitions.tasks.notify", "partitions.tasks.plan"]
    lost_finalize.refresh_from_db()
    assert lost_finalize.status == "succeeded"


def test_run_once_runs_every_duty_and_reports_counts():
    results = maintenance.run_once()
    assert set(results) == {duty.__name__ for duty in maintenance.DUTIES}
    assert all("error" not in counts for counts in results.values())


def test_a_legacy_django_q2_schedule_still_starts_deduplicated_jobs():
    start = tasks.start_scheduled.__wrapped__  # the task without its connection cleaning (we are in a test txn)
    first = start("tests.bump_range", {"partitions": 2}, "nightly")
    second = start("tests.bump_range", {"partitions": 2}, "nightly")
    assert "started" in first and "still running" in second
    job = Job.objects.get()
    assert job.dedupe_key == "schedule:nightly"
    assert JobEvent.objects.get(job=job, type="job_created").actor == "schedule:nightly"


def test_the_tick_schedule_is_created_once():
    tasks.ensure_tick_schedule()
    tasks.ensure_tick_schedule()
    assert Schedule.objects.filter(name="partitions.tick", func="partitions.tasks.tick").count() == 1
