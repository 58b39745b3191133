"""Statistics of a run: step durations, items/s, sub-job duration percentiles, attempts, failures by class."""

from __future__ import annotations

import pytest

from partitions.statistics import job_run_statistics
from tests.support import planned_job, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


def test_percentiles_of_known_sub_job_durations_fall_in_their_ranges(no_dispatcher):
    # tests.items_serial sleeps sleep_ms * (1 + (i * 7919) % 5) / 3: 10, 20, 30, 40 and 50 ms, a fifth each.
    job = run_to_end(planned_job("tests.items_serial", {"count": 50, "chunk_size": 25, "sleep_ms": 30}))
    stats = job_run_statistics(job)
    durations = stats["subjob_durations"]
    assert durations["count"] == 50 and durations["attempts"] == 50 and durations["retried"] == 0
    assert 30 <= durations["p50_ms"] < 45
    assert 50 <= durations["p95_ms"] <= durations["p99_ms"] <= durations["max_ms"] < 120
    assert all(stats["steps_seconds"][step] is not None for step in ("prepare", "process", "finalize"))
    assert stats["items_handled"] == 50 and stats["items_per_second"] > 0
    assert stats["partitions"] == {"count": 2, "attempts": 2, "retried": 0, "retry_partitions": 0}
    assert job.stats["run"]["subjob_durations"]["count"] == 50, "finalize keeps them in the job's stats"


def test_failures_are_grouped_by_error_class_with_a_count_and_an_example(no_dispatcher):
    job = run_to_end(planned_job("tests.items_serial", {"count": 30, "chunk_size": 30, "fail_every": 3}))
    [failures] = job_run_statistics(job)["failures_by_class"]
    assert failures["error_class"] == "ValueError" and failures["count"] == 10
    assert failures["example"].startswith("ValueError: item ") and failures["example"].endswith(" failed")
