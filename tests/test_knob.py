"""The time/cost knob on a live job: `knob.job_set`, `jobs set`, the job page form, and workers honouring it."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from partitions.core.exceptions import InvalidParams, InvalidTransition
from partitions.engine import claiming
from partitions.models import Job, JobEvent, Partition
from partitions.operations import knob, services
from partitions.worker import pulse
from partitions.worker.run import run_partition
from tests.factories import make_job, make_partition
from tests.support import cli, planned_job

pytestmark = pytest.mark.usefixtures("admin_env")


def knob_url(job_id: int) -> str:
    return reverse("admin:partitions_job_knob", args=[job_id])


def client_for(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def changes_of(job: Job) -> list[tuple[str, dict]]:
    return list(JobEvent.objects.filter(job=job, type="job_settings_changed").values_list("actor", "data"))


@pytest.mark.django_db
def test_changing_max_parallel_and_deadline_of_a_running_job_is_logged_with_before_and_after(operator):
    job = make_job(status="running", max_parallel=4)
    deadline = timezone.now() + timedelta(hours=2)
    updated = knob.job_set(job.pk, actor=operator, max_parallel=12, deadline=deadline)
    assert (updated.max_parallel, updated.deadline) == (12, deadline)
    event = JobEvent.objects.get(job=job, type="job_settings_changed")
    assert event.actor_user == operator and event.data == {"max_parallel": [4, 12],
                                                           "deadline": [None, deadline.isoformat()]}
    knob.job_set(job.pk, actor=operator, max_parallel=12)
    assert len(changes_of(job)) == 1, "no change, no event"


@pytest.mark.django_db
@pytest.mark.parametrize(("changes", "field"), [
    ({"max_parallel": -1}, "max_parallel"),
    ({"max_parallel": 10**9}, "max_parallel"),
    ({"max_parallel": True}, "max_parallel"),
    ({"deadline": timezone.now() - timedelta(minutes=1)}, "deadline"),
    ({}, "__all__"),
])
def test_bad_knob_input_is_one_clear_error_and_writes_nothing(changes, field):
    job = make_job(status="running", max_parallel=4)
    with pytest.raises(InvalidParams) as caught:
        knob.job_set(job.pk, actor="test", **changes)
    assert list(caught.value.errors) == [field]
    job.refresh_from_db()
    assert (job.max_parallel, job.deadline, changes_of(job)) == (4, None, [])


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["finalizing", "succeeded", "failed", "cancelled"])
def test_the_knob_of_a_job_that_reached_finalize_does_not_move(status):
    job = make_job(status=status, max_parallel=4)
    with pytest.raises(InvalidTransition):
        knob.job_set(job.pk, actor="test", max_parallel=8)
    assert Job.objects.get(pk=job.pk).max_parallel == 4


@pytest.mark.django_db
def test_jobs_set_changes_the_knob_and_refuses_bad_input_in_one_line():
    job = make_job(status="paused", max_parallel=2)
    deadline = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    code, out, _ = cli("set", str(job.pk), "--max-parallel", "6", "--deadline", deadline.isoformat())
    assert code == 0 and out.strip() == f"job {job.pk}: max parallel 6, deadline {deadline:%Y-%m-%d %H:%M:%S} UTC"
    code, out, _ = cli("set", str(job.pk), "--deadline", "none")
    assert code == 0 and Job.objects.get(pk=job.pk).deadline is None
    for bad in (["--max-parallel", "-3"], ["--max-parallel", "x"], ["--deadline", "yesterday"], []):
        code, out, err = cli("set", str(job.pk), *bad)
        last = err.strip().splitlines()[-1]
        assert code != 0 and out == "" and ("error:" in last or last.startswith("CommandError:")), (bad, err)
    assert Job.objects.get(pk=job.pk).max_parallel == 6
    assert [data for _, data in changes_of(job)][-1]["max_parallel"] == [2, 6]


@pytest.mark.django_db
def test_the_job_page_form_changes_the_knob_for_operators_only_by_post_with_csrf(operator, viewer):
    job = make_job(status="running", max_parallel=3)
    page = client_for(operator).get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert 'id="pj-knob"' in page
    assert 'id="pj-knob"' not in client_for(viewer).get(reverse("admin:partitions_job_change", args=[job.pk])
                                                        ).content.decode()

    assert client_for(viewer).post(knob_url(job.pk), {"max_parallel": "9"}).status_code == 403
    assert client_for(operator).get(knob_url(job.pk)).status_code == 405
    assert client_for(operator, enforce_csrf_checks=True).post(knob_url(job.pk), {"max_parallel": "9"}
                                                               ).status_code == 403
    assert Job.objects.get(pk=job.pk).max_parallel == 3 and changes_of(job) == []

    response = client_for(operator).post(knob_url(job.pk), {"max_parallel": "9"}, follow=True)
    assert "max parallel 9" in response.content.decode()
    assert Job.objects.get(pk=job.pk).max_parallel == 9
    assert JobEvent.objects.get(job=job, type="job_settings_changed").actor_user == operator


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{"max_parallel": "-1"}, {"max_parallel": "lots"}, {"deadline": "soon"},
                                  {"deadline": "2000-01-01 00:00"}])
def test_the_job_page_form_turns_bad_input_into_one_message_and_writes_nothing(operator, data):
    job = make_job(status="running", max_parallel=3)
    response = client_for(operator).post(knob_url(job.pk), data, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert response.status_code == 200 and len(messages) == 1 and messages[0].startswith(
        ("Nothing changed", "Cannot change")), messages
    assert Job.objects.get(pk=job.pk).max_parallel == 3 and changes_of(job) == []


@pytest.mark.django_db
def test_a_nul_character_in_the_knob_form_is_a_400_and_writes_nothing(operator):
    job = make_job(status="running", max_parallel=3)
    assert client_for(operator).post(knob_url(job.pk), {"max_parallel": "1\x00"}).status_code == 400
    assert Job.objects.get(pk=job.pk).max_parallel == 3 and changes_of(job) == []


@pytest.mark.django_db
def test_partitions_above_a_lowered_cap_are_the_highest_ids_of_the_live_ones():
    job = make_job(status="running", max_parallel=2)
    live = [make_partition(job, seq=i, status="running") for i in range(4)]
    make_partition(job, seq=9, status="pending")
    assert pulse.partitions_over_cap(job.pk) == {live[2].pk, live[3].pk}
    Job.objects.filter(pk=job.pk).update(max_parallel=0)
    assert pulse.partitions_over_cap(job.pk) == frozenset()


@pytest.mark.django_db(transaction=True)
def test_lowering_max_parallel_hands_the_partition_above_the_cap_back_at_its_next_batch(no_dispatcher, settings):
    settings.PARTITIONS_SAMPLE_SECONDS = 0.05
    job = planned_job("tests.items_fed", {"count": 120, "chunk_size": 60, "sleep_ms": 15})
    claimed = claiming.partition_claim(worker_id="w", lease_seconds=60, job_id=job.pk, limit=2)
    assert len(claimed) == 2
    outcomes: dict[int, str] = {}

    def run(partition: Partition) -> None:
        try:
            outcomes[partition.pk] = run_partition(partition, worker_id=f"w{partition.seq}").reason
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(p,)) for p in claimed]
    for thread in threads:
        thread.start()
    knob.job_set(job.pk, actor="test", max_parallel=1)
    for thread in threads:
        thread.join(60)
    assert outcomes[claimed[1].pk] == "max_parallel lowered", outcomes
    assert outcomes[claimed[0].pk] == "", "the partition within the cap runs to its end"


@pytest.mark.django_db(transaction=True)
def test_jobs_commands_print_no_info_logs_below_verbosity_2(caplog):
    job = make_job(status="paused")
    make_partition(job)  # claimable once resumed: resume enqueues drains, and django-q2 logs each at INFO
    caplog.set_level(logging.INFO)
    noisy = logging.getLogger("django-q")
    code, _, _ = cli("resume", str(job.pk))
    noisy.info("Enqueued [opsapp] 1")  # what django-q2 logs after the command: the command only muted itself
    assert code == 0 and [r.getMessage() for r in caplog.records] == ["Enqueued [opsapp] 1"]
    caplog.clear()
    OrmQ.objects.all().delete()  # the spare drains the first resume queued: the second queues them again
    services.job_pause(job.pk, actor="test")
    code, _, _ = cli("-v", "2", "resume", str(job.pk))
    assert code == 0 and any("Enqueued" in r.getMessage() for r in caplog.records)
