"""A rate-limited job keeps progressing at about its rate however short the drains and however many share the
limiter: a drain starts what it admitted (the reservation was waited for) and reserves nothing it has no budget
left to run. Before: two drains of a fed job, each admitting a second item near its budget's end, refused to start
the admitted items, so every drain spent reservations and committed nothing, and the job stood still. Reserved
items a budget leaves unstarted are given back to the limiter while no later reservation was taken."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from partitions import worker
from partitions.engine import throttling
from partitions.models import Job, SubJob
from partitions.worker.pacing import Pacer
from tests.factories import make_job
from tests.support import planned_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatcher")]

RATE, WINDOW_SECONDS, DRAIN_SECONDS = 1.0, 9.0, 2.5


def items_done(job: Job) -> int:
    return SubJob.objects.filter(partition__job=job, status="succeeded").count()


def drain_until(job_id: int, name: str, until: float, errors: list) -> None:
    """Drains end and start again, as django-q2 schedules them; two of these run at once."""
    try:
        while time.monotonic() < until:
            worker.drain(budget_seconds=DRAIN_SECONDS, job_id=job_id, worker=name, standby=False)
    except Exception as exc:  # reported by the test thread
        errors.append(exc)
    finally:
        connections.close_all()


def test_two_short_drains_of_a_fed_job_progress_at_about_the_rate():
    job = planned_job("tests.items_fed", {"count": 200, "chunk_size": 50, "sleep_ms": 100},
                      rate_limit=RATE, max_parallel=2)
    started = time.monotonic()
    errors: list = []
    threads = [threading.Thread(target=drain_until, args=(job.pk, f"drain-{n}", started + WINDOW_SECONDS, errors))
               for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window = time.monotonic() - started
    assert not errors, errors
    done = items_done(job)
    burst = RATE * throttling.RATE_HORIZON_SECONDS + max(1, int(RATE * throttling.RATE_SLICE_SECONDS))
    # At least half the rate: a drain's last second or so may go unused (no room for a wait and an item).
    assert RATE * window / 2 <= done <= RATE * window + burst, f"{done} items in {window:.1f} s at {RATE}/s"


class _Keeper:
    lost = False


def test_reserved_items_that_will_not_run_are_given_back_unless_a_later_reservation_was_taken():
    job = make_job(rate_limit=1.0, status="running")
    pacer = Pacer(job, None, throttling.job_controls(job.pk), worker_id="w", keeper=_Keeper(), deadline=None)
    assert pacer.admit(3)  # the first reservation starts now and books three seconds
    booked = Job.objects.get(pk=job.pk).rate_tat
    pacer.release(2)
    assert (booked - Job.objects.get(pk=job.pk).rate_tat).total_seconds() == pytest.approx(2.0)
    pacer.release(1)  # given back once: nothing more
    assert (booked - Job.objects.get(pk=job.pk).rate_tat).total_seconds() == pytest.approx(2.0)

    other = make_job(rate_limit=10.0, status="running")
    mine = throttling.rate_reserve(other.pk, 1)
    assert throttling.rate_reserve(other.pk, 1) is not None  # another run reserves after it
    later = Job.objects.get(pk=other.pk).rate_tat
    assert throttling.rate_release(other.pk, mine, 1) is False  # giving it back would overlap the later one
    assert Job.objects.get(pk=other.pk).rate_tat == later
