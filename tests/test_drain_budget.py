"""The drain budget and the rate limiter hold together (issue 23): an item runs only with a reservation, even when
the drain's budget is shorter than the wait (D5); no wait is ever negative (D6); a drain starts no item its
estimate says would run past the budget, and the system check sizes django-q2's timeout for the longest item
(D7). Drains run in this process against the real database; windows are ~3 s, not minutes."""

from __future__ import annotations

import time

import pytest
from django.core.checks import run_checks

from partitions import worker
from partitions.core.waits import sleep_for
from partitions.engine import throttling
from partitions.models import Job, SubJob
from partitions.worker.draining import _DrainState
from partitions.worker.pacing import Pacer
from tests.factories import make_job, make_partition
from tests.support import planned_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

#: The window every rate is measured over, and the budget of each drain inside it (shorter than a 0.02/s wait).
WINDOW_SECONDS, DRAIN_SECONDS = 3.0, 1.5


def items_done(job: Job) -> int:
    return SubJob.objects.filter(partition__job=job, status="succeeded").count()


@pytest.mark.parametrize("rate", [0.02, 0.05, 0.5, 5.0, 50.0])
def test_items_stay_within_rate_times_window_plus_burst_however_short_the_drains(rate):
    job = planned_job("tests.items_serial", {"count": 400, "chunk_size": 400}, rate_limit=rate)
    started = time.monotonic()
    while time.monotonic() - started < WINDOW_SECONDS:  # drains end and start again, as under django-q2
        worker.drain(budget_seconds=DRAIN_SECONDS, job_id=job.pk, worker="rated", standby=False)
    window = time.monotonic() - started
    # Burst: a reservation may start up to the limiter's horizon ahead, plus the first batch of the window.
    burst = rate * throttling.RATE_HORIZON_SECONDS + max(1, int(rate * throttling.RATE_SLICE_SECONDS))
    done = items_done(job)
    assert 1 <= done <= rate * window + burst, f"{done} items in {window:.1f} s at {rate}/s (burst {burst})"


class _Keeper:
    lost = False


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Every time.sleep the engine's one sleep helper makes, recorded instead of slept."""
    made: list[float] = []
    monkeypatch.setattr("partitions.core.waits.time.sleep", made.append)
    return made


def test_a_pacer_whose_budget_is_spent_admits_nothing_and_never_sleeps_a_negative_time(sleeps):
    job = make_job(rate_limit=0.02)
    pacer = Pacer(job, None, throttling.job_controls(job.pk), worker_id="w", keeper=_Keeper(),
                  deadline=time.monotonic() - 5)  # the budget ran out five seconds ago
    assert pacer.admit(1) is False and pacer.can_start() is False
    assert pacer._sleep(-3) is True and pacer._sleep(10) is False  # nothing to wait passes; the rest is cut
    assert sleeps == []  # a spent budget sleeps not at all
    assert Job.objects.get(pk=job.pk).rate_tat is None  # no reservation was taken for items it did not admit


def test_sleep_for_clamps_at_zero(sleeps):
    for seconds in (-1.0, -1e9, 0.0, float("nan"), 0.25):
        sleep_for(seconds)
    assert sleeps == [0.25]  # only the positive wait reaches time.sleep


def test_a_standing_by_drain_whose_budget_is_already_spent_returns_without_a_negative_sleep(settings):
    settings.PARTITIONS_DETECT_DEAD_BACKENDS = True
    job = make_job(status="running")
    make_partition(job, status="running")  # a healthy lease elsewhere: the drain would stand by
    run = _DrainState("late-drain", time.monotonic() - 1, job.pk, standby=True)  # a negative remaining budget
    try:
        assert run.idle() in (True, False)  # before: ValueError: sleep length must be non-negative
    finally:
        from partitions.engine import claiming

        if run.standby_until is not None:
            claiming.standby_release()


@pytest.mark.parametrize(("type_name", "count"), [("tests.items_serial", 20), ("tests.items_concurrent", 80)],
                         ids=["one-by-one", "fed-4-at-a-time"])
def test_a_drain_starts_no_item_its_estimate_says_would_run_past_the_budget(type_name, count):
    # 0.1-0.5 s items, a 1 s budget: once the estimate says the next item would end past it, none starts.
    job = planned_job(type_name, {"count": count, "chunk_size": count, "sleep_ms": 300})
    began = time.monotonic()
    report = worker.drain(budget_seconds=1.0, job_id=job.pk, worker="budgeted", standby=False)
    took = time.monotonic() - began
    assert report.outcomes["released"] == 1
    assert took < 1.0 + 0.6, f"the drain outlasted its budget by more than one item ({took:.2f} s)"
    assert 1 <= items_done(job) < count


def _e001(settings, **q) -> list:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, **q}
    return [m for m in run_checks() if m.id == "partitions.E001"]


def test_the_system_check_wants_the_task_timeout_comfortably_above_the_budget_plus_the_longest_item(settings):
    settings.PARTITIONS_DRAIN_BUDGET_SECONDS, settings.PARTITIONS_LEASE_SECONDS = 30.0, 20.0
    settings.PARTITIONS_MAX_ITEM_SECONDS = 60.0  # the old demo's 60 s invoice
    [error] = _e001(settings, timeout=90, retry=400)
    assert "longest item (60 s" in error.msg and "at least 108 s" in error.msg
    assert not _e001(settings, timeout=120, retry=400)
    settings.PARTITIONS_MAX_ITEM_SECONDS = 10.0
    assert not _e001(settings, timeout=90, retry=400)
    assert _e001(settings, timeout=45, retry=400)  # 30 + 10 is not "comfortably" under 45
