"""Statistics of a run: step durations, items/s, sub-job duration percentiles, attempts, failures by class."""

from __future__ import annotations

import pytest

from partitions.models import SubJob
from partitions.reads.statistics import job_run_statistics
from tests.support import planned_job, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


def linear_percentile(ordered: list[int], q: float) -> float:
    """PostgreSQL's percentile_cont of sorted values."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_percentiles_of_known_sub_job_durations_fall_in_their_ranges(no_dispatcher):
    # tests.items_serial sleeps sleep_ms * (1 + (i * 7919) % 5) / 3: 10, 20, 30, 40 and 50 ms, a fifth each.
    job = run_to_end(planned_job("tests.items_serial", {"count": 50, "chunk_size": 25, "sleep_ms": 30}))
    stats = job_run_statistics(job)
    durations = stats["subjob_durations"]
    assert durations["count"] == 50 and durations["attempts"] == 50 and durations["retried"] == 0
    # Each sub-job recorded at least the sleep the test gave it, and the percentiles are those of what was
    # recorded (linear interpolation, as percentile_cont): exact, whatever the machine's load.
    recorded = {int(key.split("-")[1]): ms for key, ms in SubJob.objects.filter(job=job)
                .values_list("key", "duration_ms")}
    assert all(recorded[i] >= 30 * (1 + (i * 7919) % 5) // 3 for i in range(50))
    ordered = sorted(recorded.values())
    expected = {f"p{round(q * 100)}_ms": round(linear_percentile(ordered, q), 1) for q in (0.5, 0.95, 0.99)}
    assert {k: durations[k] for k in expected} == expected and durations["max_ms"] == ordered[-1]
    assert all(stats["steps_seconds"][step] is not None for step in ("prepare", "process", "finalize"))
    assert stats["items_handled"] == 50 and stats["items_per_second"] > 0
    assert stats["partitions"] == {"count": 2, "attempts": 2, "retried": 0, "retry_partitions": 0}
    assert job.stats["run"]["subjob_durations"]["count"] == 50, "finalize keeps them in the job's stats"


def test_failures_are_grouped_by_error_class_with_a_count_and_an_example(no_dispatcher):
    job = run_to_end(planned_job("tests.items_serial", {"count": 30, "chunk_size": 30, "fail_every": 3}))
    [failures] = job_run_statistics(job)["failures_by_class"]
    assert failures["error_class"] == "ValueError" and failures["count"] == 10
    assert failures["example"].startswith("ValueError: item ") and failures["example"].endswith(" failed")
