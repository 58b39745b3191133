"""Retention: finished jobs' history past the cut-off goes in bounded batches; everything else stays."""

from datetime import timedelta

import pytest
from django.db.models.functions import Now

from partitions.models import Job, JobEvent, JobSample, Partition, SubJob
from partitions.operations.retention import history_prune
from partitions.worker import maintenance
from tests.factories import make_job, make_partition
from tests.support import cli

pytestmark = pytest.mark.django_db

MONTH = timedelta(days=30)


def job_with_history(*, status: str = "succeeded", finished_days_ago: float = 31, rows: int = 3) -> Job:
    """A job with `rows` partition events, sub-jobs (each with an event), samples, and two job-level events."""
    job = make_job(status=status, stats={"summary": {"sent": rows}})
    if job.finished_at:
        Job.objects.filter(pk=job.pk).update(finished_at=Now() - timedelta(days=finished_days_ago))
    partition = make_partition(job, status="succeeded" if job.finished_at else "running", kind="items")
    JobEvent.objects.filter(job=job).delete()  # the factories' timeline: the history below is all there is
    for i in range(rows):
        subjob = SubJob.objects.create(job=job, partition=partition, seq=i, key=f"item-{i}")
        JobEvent.objects.create(job=job, partition=partition, type="partition_claimed")
        JobEvent.objects.create(job=job, subjob=subjob, type="subjob_failed")
        JobSample.objects.create(job=job, done_items=i, failed_items=0, live_leases=1)
    JobEvent.objects.create(job=job, type="job_created")
    JobEvent.objects.create(job=job, type="job_cancelled", actor="ops")
    return job


def history(job: Job) -> tuple[int, int, int, int]:
    """(partition/sub-job events, job-level events, samples, sub-jobs) left for a job."""
    events = JobEvent.objects.filter(job=job)
    return (events.exclude(partition=None, subjob=None).count(), events.filter(partition=None, subjob=None).count(),
            JobSample.objects.filter(job=job).count(), SubJob.objects.filter(job=job).count())


def test_prune_deletes_only_the_history_of_jobs_finished_before_the_cut_off_and_keeps_their_rows():
    old = job_with_history(finished_days_ago=31)
    old_failed = job_with_history(status="failed", finished_days_ago=45)
    recent = job_with_history(finished_days_ago=29)
    running = job_with_history(status="running")
    report = history_prune(older_than=MONTH)
    assert (report.jobs, report.events, report.samples, report.subjobs, report.complete) == (2, 12, 6, 6, True)
    for job in (old, old_failed):
        assert history(job) == (0, 2, 0, 0), "partition and sub-job history gone, the audit trail kept"
        kept = Job.objects.get(pk=job.pk)
        assert kept.stats == {"summary": {"sent": 3}} and kept.pruned_at is not None
        assert Partition.objects.filter(job=job).count() == 1
    assert history(recent) == history(running) == (6, 2, 3, 3), "untouched"
    assert Job.objects.get(pk=recent.pk).pruned_at is None


def test_prune_works_in_bounded_batches_and_resumes_where_it_stopped():
    jobs = [job_with_history(rows=5) for _ in range(2)]
    first = history_prune(older_than=MONTH, batch_size=4, max_batches=3)
    assert first.statements == 3 and not first.complete
    assert first.events == 12 and first.samples == 0 and first.jobs == 0
    assert not Job.objects.filter(pruned_at__isnull=False).exists()
    rest = history_prune(older_than=MONTH, batch_size=4)
    assert (rest.events, rest.samples, rest.subjobs, rest.jobs) == (8, 10, 10, 2)
    assert all(history(job) == (0, 2, 0, 0) for job in jobs)


def test_a_pruned_job_costs_one_query_on_the_next_run(django_assert_num_queries):
    job_with_history()
    history_prune(older_than=MONTH)
    with django_assert_num_queries(1):
        report = history_prune(older_than=MONTH)
    assert report.jobs == 0


def test_a_job_that_finishes_again_after_its_prune_is_pruned_again():
    job = job_with_history()
    history_prune(older_than=MONTH)
    JobEvent.objects.create(job=job, partition=Partition.objects.get(job=job), type="partition_claimed")
    Job.objects.filter(pk=job.pk).update(finished_at=Now() - timedelta(days=31) + timedelta(seconds=1),
                                         pruned_at=Now() - timedelta(days=32))
    assert history_prune(older_than=MONTH).events == 1


def test_tick_prunes_a_bounded_share_per_run_and_can_be_turned_off(settings):
    job = job_with_history(rows=5)
    settings.PARTITIONS_PRUNE_BATCH, settings.PARTITIONS_PRUNE_BATCHES_PER_TICK = 2, 2
    assert maintenance.prune_history()["events"] == 4
    settings.PARTITIONS_RETENTION_DAYS = 0
    assert maintenance.prune_history() == {"jobs": 0}
    settings.PARTITIONS_RETENTION_DAYS = 30
    assert "prune_history" in maintenance.run_once()
    settings.PARTITIONS_PRUNE_BATCHES_PER_TICK = 100
    maintenance.prune_history()
    assert history(job) == (0, 2, 0, 0)


def test_jobs_prune_cli_takes_an_age_and_reports_counts():
    old, recent = job_with_history(finished_days_ago=8), job_with_history(finished_days_ago=6)
    code, out, _ = cli("prune", "--older-than", "7d", "--json")
    assert code == 0 and '"jobs": 1' in out and '"events": 6' in out
    assert history(old) == (0, 2, 0, 0) and history(recent) == (6, 2, 3, 3)
    code, out, _ = cli("prune", "--older-than", "90m", "--force")  # under the one-day floor: --force
    assert code == 0 and out.startswith("pruned 1 job:")


@pytest.mark.parametrize("age", ["30", "30x", "-1d", "1.5d", "٣d", "9999999d", "30d\n"])
def test_jobs_prune_refuses_a_bad_age_and_deletes_nothing(age):
    job = job_with_history()
    code, _, err = cli("prune", f"--older-than={age}")
    assert code == 2 and "expected an age such as 30d" in err
    assert history(job) == (6, 2, 3, 3)
