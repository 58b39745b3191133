"""Every pair of every transition table, and the services that move jobs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from partitions.core.exceptions import DuplicateJob, InvalidParams, InvalidTransition, JobTypeNotFound
from partitions.core.states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    PARTITION_TERMINAL,
    PARTITION_TRANSITIONS,
    SUBJOB_TERMINAL,
    SUBJOB_TRANSITIONS,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
)
from partitions.engine.lifecycle import transition
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.operations import services
from tests.conftest import make_staff
from tests.factories import make_job, make_partition, make_subjob
from tests.support import started_job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_job_transition_table_is_enforced_for_every_pair(current, target):
    job = make_job(status=current)
    events_before = JobEvent.objects.filter(job=job).count()
    allowed = target in JOB_TRANSITIONS[current]
    if allowed:
        moved = transition(Job, job.pk, target, actor="test", event_type="moved")
        assert moved.status == target
        assert (moved.finished_at is not None) == (target in JOB_TERMINAL)
        assert JobEvent.objects.filter(job=job, type="moved").count() == 1
    else:
        with pytest.raises(InvalidTransition):
            transition(Job, job.pk, target, actor="test", event_type="moved")
        job.refresh_from_db()
        assert job.status == current
        assert JobEvent.objects.filter(job=job).count() == events_before


@pytest.mark.parametrize("current", list(PartitionStatus))
@pytest.mark.parametrize("target", list(PartitionStatus))
def test_partition_transition_table_is_enforced_for_every_pair(current, target):
    partition = make_partition(make_job(), status=current)
    lease = {"lease_expires_at": timezone.now() + timedelta(seconds=30)} if target == "running" else {}
    if target in PARTITION_TRANSITIONS[current]:
        moved = transition(Partition, partition.pk, target, actor="test", event_type="moved", updates=lease)
        assert moved.status == target
        assert (moved.finished_at is not None) == (target in PARTITION_TERMINAL)
        assert JobEvent.objects.filter(partition=partition).latest("id").type == "moved"
    else:
        with pytest.raises(InvalidTransition):
            transition(Partition, partition.pk, target, actor="test", event_type="moved", updates=lease)
        partition.refresh_from_db()
        assert partition.status == current


@pytest.mark.parametrize("current", list(SubJobStatus))
@pytest.mark.parametrize("target", list(SubJobStatus))
def test_subjob_transition_table_is_enforced_for_every_pair(current, target):
    partition = make_partition(make_job())
    subjob = make_subjob(partition, seq=0, key="k", status=current)
    if target in SUBJOB_TRANSITIONS[current]:
        moved = transition(SubJob, subjob.pk, target, actor="test", event_type="moved")
        assert moved.status == target
        assert (moved.finished_at is not None) == (target in SUBJOB_TERMINAL)
    else:
        with pytest.raises(InvalidTransition):
            transition(SubJob, subjob.pk, target, actor="test", event_type="moved")


def test_invalid_params_raise_with_the_form_errors_and_write_nothing():
    with pytest.raises(InvalidParams) as caught:
        services.job_start("tests.bump_range", {"partitions": "zero"}, actor="test")
    assert "partitions" in caught.value.errors
    assert not Job.objects.exists()
    assert not JobEvent.objects.exists()


def test_unknown_job_type_is_a_typed_error():
    with pytest.raises(JobTypeNotFound):
        services.job_start("nope.nothing", {}, actor="test")


def test_starting_the_same_work_twice_returns_the_active_job_until_it_ends():
    first, created = services.job_start("tests.bump_range", {"partitions": 2}, actor="test", dedupe_key="nightly")
    again, created_again = services.job_start("tests.bump_range", {"partitions": 2}, actor="test",
                                              dedupe_key="nightly")
    assert created and not created_again
    assert again.pk == first.pk
    services.job_cancel(first.pk, actor="test")
    fresh, created_fresh = services.job_start("tests.bump_range", {"partitions": 2}, actor="test",
                                              dedupe_key="nightly")
    assert created_fresh and fresh.pk != first.pk


def test_reopening_a_failed_job_whose_dedupe_key_was_reused_is_refused():
    old = make_job(status="failed", dedupe_key="k1")
    make_partition(old, status="failed")
    make_job(status="running", dedupe_key="k1")
    with pytest.raises(DuplicateJob):
        services.job_retry_failed(old.pk, actor="test")
    old.refresh_from_db()
    assert old.status == "failed"


def test_pause_resume_cancel_write_events_with_the_actor():
    user = make_staff("ops", "operate_job")  # a user actor needs the right (partitions.permissions)
    job = make_job(status="running")
    make_partition(job, seq=0)
    make_partition(job, seq=1, status="succeeded")
    made = JobEvent.objects.latest("id").pk
    services.job_pause(job.pk, actor=user)
    services.job_resume(job.pk, actor=user)
    services.job_cancel(job.pk, actor=user, reason="wrong month")
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error == "wrong month"
    assert list(job.partitions.values_list("status", flat=True)) == ["cancelled", "succeeded"]
    events = JobEvent.objects.filter(job=job, partition=None, id__gt=made).order_by("id")
    assert [(e.type, e.actor, e.actor_user_id) for e in events] == [
        ("job_paused", "user:ops", user.pk), ("job_resumed", "user:ops", user.pk),
        ("job_cancelled", "user:ops", user.pk),
    ]
    with pytest.raises(InvalidTransition):
        services.job_resume(job.pk, actor=user)


def test_a_started_job_is_pending_with_validated_params():
    job = started_job("tests.bump_range", {"partitions": "3"})
    assert job.status == "pending"
    assert job.params == {"partitions": 3, "sleep_ms": None}
    assert JobEvent.objects.get(job=job).type == "job_created"


def test_batched_subjob_finish_moves_only_rows_the_table_allows_and_records_each_outcome():
    from partitions.engine.lifecycle import subjobs_finish

    partition = make_partition(make_job())
    pending = SubJob.objects.create(job=partition.job, partition=partition, seq=0, key="a")
    done = make_subjob(partition, seq=1, key="b", status="succeeded")
    moved = subjobs_finish([(pending.pk, 12, {"ok": 1}, "", "", "", ""), (done.pk, 99, None, "late", "", "", "")],
                           "succeeded")
    assert moved == 1
    pending.refresh_from_db()
    done.refresh_from_db()
    assert (pending.status, pending.duration_ms, pending.result, pending.attempts) == ("succeeded", 12, {"ok": 1}, 1)
    assert pending.finished_at is not None
    assert (done.duration_ms, done.error) == (None, "")
