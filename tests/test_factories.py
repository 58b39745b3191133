"""tests/factories.py reaches every status of every model through lifecycle, along the transition tables."""

import pytest

from partitions.core.states import (
    JOB_TERMINAL,
    PARTITION_TERMINAL,
    SUBJOB_TERMINAL,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
)
from partitions.models import Job, JobEvent, Partition, SubJob
from tests.factories import make_job, make_partition, make_subjob, move, path

pytestmark = pytest.mark.django_db


def moves(**where) -> list[str]:
    """The statuses the factory walked a row through, in order."""
    events = JobEvent.objects.filter(type="factory_moved", **where).order_by("id")
    return list(events.values_list("data__to", flat=True))


@pytest.mark.parametrize("status", list(JobStatus))
def test_a_job_is_started_by_the_service_and_walked_to_any_status(status):
    job = make_job(status=status, max_parallel=3)
    assert (job.status, job.max_parallel) == (status, 3)
    assert (job.finished_at is not None) == (status in JOB_TERMINAL)
    assert JobEvent.objects.filter(job=job, type="job_created").count() == 1
    assert moves(job=job, partition=None, subjob=None) == path(Job, "pending", status)


@pytest.mark.parametrize("status", list(PartitionStatus))
def test_a_partition_is_walked_to_any_status_and_a_running_one_holds_a_lease(status):
    partition = make_partition(make_job(), status=status, done_items=7)
    assert (partition.status, partition.done_items) == (status, 7)
    assert (partition.finished_at is not None) == (status in PARTITION_TERMINAL)
    assert (partition.lease_expires_at is not None) == (status == "running")
    assert moves(partition=partition) == path(Partition, "pending", status)


@pytest.mark.parametrize("status", list(SubJobStatus))
def test_a_subjob_is_walked_to_any_status(status):
    subjob = make_subjob(make_partition(make_job()), status=status, error="x" if status == "failed" else "")
    assert subjob.status == status and (subjob.finished_at is not None) == (status in SUBJOB_TERMINAL)
    assert moves(subjob=subjob) == path(SubJob, "pending", status)


def test_move_takes_a_row_on_from_where_it_is_and_refuses_a_status_it_cannot_reach():
    job = make_job(status="paused")
    assert move(job, "cancelled").status == "cancelled"
    with pytest.raises(ValueError, match="no way from cancelled to running"):
        move(job, "running")
    assert Job.objects.get(pk=job.pk).status == "cancelled"
