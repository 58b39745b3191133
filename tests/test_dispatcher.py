"""The dispatcher only enqueues: it is chosen by a dotted path (PARTITIONS_DISPATCHER, with aliases), a job's
last partition enqueues its finalize step instead of running it inline, tick runs the steps itself, and every
call that reaches a dispatcher is counted."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django_q.models import OrmQ

from partitions import tasks
from partitions.engine import dispatch
from partitions.worker import maintenance
from tests.factories import make_job, make_partition

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("setting", "path"), [
    ("django_q", "partitions.tasks.QDispatcher"),
    ("partitions.tasks.QDispatcher", "partitions.tasks.QDispatcher"),
    (" tests.test_dispatcher.Recording ", "tests.test_dispatcher.Recording"),
    (None, None), ("none", None), ("", None),
])
def test_the_setting_is_a_dotted_path_or_an_alias(setting, path):
    assert dispatch.dispatcher_path(setting) == path


@pytest.mark.parametrize("setting", ["partitions.tasks.NoSuchDispatcher", "no_such_module.Dispatcher", 42])
def test_a_dispatcher_that_cannot_be_loaded_is_one_clear_configuration_error(setting):
    with pytest.raises(ImproperlyConfigured, match="PARTITIONS_DISPATCHER"):
        dispatch.dispatcher_load(setting)


class Recording:
    """A dispatcher that records what reaches it (loaded by its dotted path below)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.hooked = False

    def installed(self) -> None:
        self.hooked = True

    def job_created(self, job_id: int) -> None:
        self.calls.append(("job_created", job_id))

    def work_available(self) -> None:
        self.calls.append(("work_available",))

    def job_drained(self, job_id: int) -> None:
        self.calls.append(("job_drained", job_id))

    def work_claimed(self) -> None:
        self.calls.append(("work_claimed",))

    def notifications_due(self) -> None:
        self.calls.append(("notifications_due",))

    def fleet_workers(self) -> int | None:
        return 3


def test_a_dotted_path_loads_its_class_runs_its_hook_and_every_dispatch_is_counted():
    recording = dispatch.dispatcher_load("tests.test_dispatcher.Recording")
    assert isinstance(recording, Recording) and recording.hooked
    previous = dispatch.current()
    before = dispatch.counts()
    dispatch.set_dispatcher(recording)
    try:
        dispatch.job_created(7)
        dispatch.job_drained(7)
        dispatch.work_available()
        dispatch.work_available()
        assert dispatch.fleet_workers() == 3  # a question, not a dispatch
    finally:
        dispatch.set_dispatcher(previous)
    grown = {name: dispatch.counts().get(name, 0) - before.get(name, 0) for name in dispatch.counts()}
    assert recording.calls == [("job_created", 7), ("job_drained", 7), ("work_available",), ("work_available",)]
    assert {name: n for name, n in grown.items() if n} == {"job_created": 1, "job_drained": 1, "work_available": 2}


def test_nothing_is_counted_without_a_dispatcher(no_dispatcher):
    before = dispatch.counts()
    dispatch.job_created(1)
    dispatch.notifications_due()
    assert dispatch.counts() == before


def test_the_django_q2_dispatcher_enqueues_finalize_and_runs_nothing_inline():
    job = make_job(status="running")
    make_partition(job, status="succeeded")
    tasks.QDispatcher().job_drained(job.pk)
    job.refresh_from_db()
    assert job.status == "running"  # not finalized here
    assert [(task.func(), task.args()) for task in OrmQ.objects.all()] == [("partitions.tasks.finalize", (job.pk,))]


def test_tick_runs_a_lost_finalize_itself(no_dispatcher):
    job = make_job(status="running")
    make_partition(job, status="succeeded")
    untouched = make_job(status="running")
    make_partition(untouched, status="running")
    assert maintenance.finalize_finished_jobs() == {"finalized": 1}
    job.refresh_from_db()
    untouched.refresh_from_db()
    assert job.status == "succeeded" and untouched.status == "running"
    assert OrmQ.objects.count() == 0
