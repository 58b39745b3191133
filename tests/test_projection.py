"""The projection as a pure function over synthetic samples and settings changes: each rule of the figures an
operator trusts (rate since the last change, the effective rate under every limit, what limits the job, advice
that can work, verdicts from the outcome), and a job's attempts read from its lifecycle events."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from partitions.admin import display
from partitions.models import Job
from partitions.reads.attempts import Mark, active_seconds, attempts_of, work_seconds
from partitions.reads.progress import Progress
from partitions.reads.projection import JobFacts, Sample, current_rate, project
from partitions.reads.statistics import JobStats
from partitions.wording import presenters

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def samples(start: float, end: float, *, rate: float, handled: int = 0, live: int = 2, every: float = 2.0):
    """Samples every `every` seconds from `start` to `end` at `rate` items/s, from `handled` items on."""
    out, t = [], start
    while t <= end + 1e-9:
        out.append(Sample(at(t), handled + round(rate * (t - start)), live))
        t += every
    return out


def throttled_mid_run(**overrides) -> JobFacts:
    """10 items/s for 200 s with 2 in flight, then a rate limit of 3 items/s; 20 s later, 2,060 of 12,000 items
    handled and the deadline 30 minutes away: at 3 items/s the 9,940 items left need 55 minutes."""
    before = samples(0, 200, rate=10)
    after = samples(202, 220, rate=3, handled=2000 + 6)
    fields = dict(status="running", now=at(220), handled=2060, items_total=12_000, live_leases=2,
                  samples=before + after, settings_changed_at=at(200.5), work_seconds=220, rate_limit=3.0,
                  max_parallel=2, deadline=at(220 + 1800))
    return JobFacts(**{**fields, **overrides})


def test_a_job_throttled_mid_run_shows_the_rate_since_the_change_at_the_limit():
    p = project(throttled_mid_run())
    # Not the window's mix (about 9.4 items/s over 220 s): only what happened since the throttle.
    assert p.items_per_second == pytest.approx(3.0, abs=0.01) and p.rate_source == "samples"
    assert p.effective_rate == pytest.approx(3.0, abs=0.01)
    assert p.limited_by == "rate_limit"


def test_a_throttled_late_job_needs_remaining_over_the_limit_and_gets_no_workers_advice():
    p = project(throttled_mid_run())
    assert p.eta_seconds == pytest.approx(9940 / 3.0, rel=0.01)
    assert p.meets_deadline is False and p.verdict == "late"
    assert p.workers_needed is None, "no number of workers helps under a rate limit"
    assert p.rate_needed == pytest.approx(9940 / 1800, rel=0.001), "the limit that would meet the deadline"


def test_right_after_a_change_the_rate_is_measuring_never_the_old_rate():
    facts = throttled_mid_run(samples=samples(0, 200, rate=10), now=at(201), handled=2003)
    p = project(facts)
    assert p.items_per_second is None and p.rate_source == "measuring"
    assert p.eta_seconds is None and p.effective_rate is None and p.verdict is None


def test_under_a_new_rate_limit_the_rate_is_never_shown_above_it_and_is_known_within_two_sample_intervals():
    # Throttled at 200.5 s: the batches in flight then still commit 40 items by 202 s, then 3 items/s.
    def handled(t: float) -> int:
        return math.floor(10 * t) if t <= 200 else 2040 + math.floor(3 * (t - 202)) if t >= 202 else 2040

    history = [Sample(at(t), handled(t), 2) for t in range(0, 400, 2)]
    shown = {}
    for tenth in range(2010, 2600):
        t = tenth / 10
        facts = throttled_mid_run(samples=[s for s in history if s.at <= at(t)], now=at(t), handled=handled(t))
        shown[t] = current_rate(facts)[0]
    assert all(rate is None or rate <= 3.0 + 0.05 for rate in shown.values()), "never above the limit"
    assert all(rate is not None for t, rate in shown.items() if t >= 200.5 + 2 * 2 + 1), "known after 2 intervals"


def test_lowering_max_parallel_bounds_the_projection_by_the_new_cap_at_once():
    # 4 in flight at 5 items/s each; max parallel lowered to 2 (the partitions above it hand back at their next
    # batch): the projection uses 2 x 5 items/s, not the 20 items/s still measured.
    facts = JobFacts(status="running", now=at(100), handled=1000, items_total=10_000, live_leases=4,
                     samples=samples(80, 98, rate=20, handled=600, live=4), settings_changed_at=at(79),
                     work_seconds=100, max_parallel=2, deadline=at(400))
    p = project(facts)
    assert p.per_worker_rate == pytest.approx(5.0, rel=0.05)
    assert p.effective_rate == pytest.approx(10.0, rel=0.05)
    assert p.limited_by == "max_parallel"
    assert p.eta_seconds == pytest.approx(9000 / 10.0, rel=0.05) and p.verdict == "late"
    assert p.workers_needed == 6  # 9,000 items in 300 s at 5 items/s per worker


def test_raising_max_parallel_past_the_fleet_says_the_fleet_binds_and_advises_with_its_size():
    facts = JobFacts(status="running", now=at(100), handled=1000, items_total=10_000, live_leases=2,
                     samples=samples(80, 98, rate=10, handled=800, live=2), settings_changed_at=at(79),
                     work_seconds=100, max_parallel=8, fleet_workers=2, fleet_free=2, deadline=at(400))
    p = project(facts)
    assert p.limited_by == "workers" and p.fleet_workers == 2
    assert p.workers_needed == 6 and p.rate_needed is None


def test_with_free_workers_and_no_limit_binding_there_is_no_advice():
    facts = JobFacts(status="running", now=at(100), handled=1000, items_total=10_000, live_leases=1,
                     samples=samples(80, 98, rate=10, handled=800, live=1), work_seconds=100, max_parallel=4,
                     fleet_workers=8, fleet_free=8, deadline=at(400))
    p = project(facts)
    assert p.limited_by is None and p.workers_needed is None and p.rate_needed is None
    assert p.verdict == "late", "late all the same: the projection says so without advice that cannot work"


def test_a_paused_job_projects_nothing_and_says_paused():
    p = project(throttled_mid_run(status="paused"))
    assert (p.effective_rate, p.eta_seconds, p.limited_by, p.workers_needed) == (0.0, None, "paused", None)


def test_after_a_resume_the_rate_is_measured_from_the_resume_on():
    # 10 items/s, paused for 100 s (nothing handled, samples still flat), resumed at 300 s at 4 items/s.
    history = samples(0, 200, rate=10) + samples(202, 300, rate=0, handled=2000) + samples(302, 320, rate=4,
                                                                                            handled=2000)
    facts = JobFacts(status="running", now=at(320), handled=2072, items_total=5000, samples=history,
                     settings_changed_at=at(300.5), work_seconds=220)
    assert project(facts).items_per_second == pytest.approx(4.0, abs=0.01)


@pytest.mark.parametrize("status", ["pending", "planning", "finalizing"])
def test_a_job_not_running_projects_nothing_and_advises_nothing(status):
    p = project(throttled_mid_run(status=status))
    assert (p.eta_seconds, p.projected_finish, p.meets_deadline, p.verdict) == (None, None, None, None)
    assert (p.limited_by, p.workers_needed, p.rate_needed) == (None, None, None)


def test_a_health_hold_is_zero_rate_no_eta_and_says_why():
    p = project(throttled_mid_run(held_reason="replica lag 40s > 30s", rate_limit=None))
    assert (p.effective_rate, p.eta_seconds, p.limited_by, p.held) == (0.0, None, "health", "replica lag 40s > 30s")
    assert p.meets_deadline is None and p.workers_needed is None and p.rate_needed is None


@pytest.mark.parametrize("status", ["cancelled", "failed"])
def test_cancelled_or_failed_work_never_met_a_deadline(status):
    facts = JobFacts(status=status, now=at(100), handled=620, items_total=10_000, work_seconds=60,
                     deadline=at(3600), finished_at=at(60))
    p = project(facts)
    assert p.meets_deadline is False and p.verdict == "not met"
    assert p.eta_seconds is None and p.limited_by is None and p.workers_needed is None


@pytest.mark.parametrize(("finished", "verdict"), [(3000, "met"), (3600, "met"), (3700, "missed")])
def test_a_succeeded_job_met_or_missed_its_deadline_by_its_finish_time(finished, verdict):
    facts = JobFacts(status="succeeded", now=at(4000), handled=10_000, items_total=10_000,
                     work_seconds=2000, deadline=at(3600), finished_at=at(finished))
    p = project(facts)
    assert p.verdict == verdict and p.meets_deadline is (verdict == "met")
    assert p.items_per_second == pytest.approx(5.0) and p.rate_source == "average"


def test_without_samples_and_without_a_change_the_rate_is_the_work_time_average():
    facts = JobFacts(status="running", now=at(100), handled=300, items_total=600, work_seconds=100)
    p = project(facts)
    assert (p.items_per_second, p.rate_source, p.eta_seconds) == (3.0, "average", 100.0)


def test_without_samples_after_a_change_there_is_no_average_that_mixes_before_and_after():
    facts = JobFacts(status="running", now=at(100), handled=300, items_total=600, work_seconds=100,
                     run_began_at=at(0), settings_changed_at=at(60))
    assert current_rate(facts) == (None, None, "measuring")
    assert current_rate(JobFacts(**{**facts.__dict__, "settings_changed_at": at(0)}))[2] == "average"


def test_a_job_with_nothing_left_has_an_eta_of_zero():
    p = project(throttled_mid_run(handled=12_000))
    assert p.eta_seconds == 0.0 and p.meets_deadline is True and p.rate_needed is None


# Attempts ---------------------------------------------------------------------------------------------------------


def failed_then_retried() -> list[Mark]:
    """Run 1: prepare 2 s, process 100 s with a 30 s pause, finalize 1 s, failed with 1,000 items handled; the
    job sits failed for an hour; retry 1 re-runs 526 failed items in 20 s and finalizes in 0.5 s."""
    return [
        Mark("planning_started", at(0)), Mark("planning_finished", at(2)),
        Mark("job_paused", at(50)), Mark("job_resumed", at(80)),
        Mark("finalizing_started", at(132)), Mark("job_failed", at(133)),
        Mark("job_reopened", at(3733), {"handled": 1000, "handled_after": 474}),
        Mark("finalizing_started", at(3753)), Mark("job_succeeded", at(3753.5)),
    ]


def test_a_retry_is_its_own_attempt_with_its_own_steps():
    run, retry = attempts_of(failed_then_retried(), handled_now=1000)
    assert (run.label, run.outcome, retry.label, retry.outcome) == ("run 1", "failed", "retry 1", "succeeded")
    now = at(4000)
    assert run.step_seconds("prepare", now) == 2
    assert run.step_seconds("process", now) == 100, "130 s less the 30 s paused"
    assert run.step_seconds("finalize", now) == 1, "only the finalize step, not until the retry ended"
    assert (retry.step_seconds("prepare", now), retry.step_seconds("process", now)) == (None, 20)
    assert retry.step_seconds("finalize", now) == 0.5
    assert (run.items(), retry.items()) == (1000, 526)


def test_time_spent_failed_or_paused_is_not_work():
    attempts = attempts_of(failed_then_retried(), handled_now=1000)
    assert work_seconds(attempts, at(4000)) == 120
    assert active_seconds(attempts, at(4000)) == pytest.approx(133 - 30 + 20.5)


def test_an_attempt_still_paused_counts_its_pause_up_to_now():
    [run] = attempts_of([Mark("planning_started", at(0)), Mark("planning_finished", at(1)),
                         Mark("job_paused", at(11))], handled_now=50)
    assert run.step_seconds("process", at(100)) == 10 and run.paused_in(at(100)) == 89


def test_a_reclaimed_step_keeps_its_first_opening():
    [run] = attempts_of([Mark("planning_started", at(0)), Mark("planning_started", at(30)),
                         Mark("planning_finished", at(32))], handled_now=0)
    assert run.step_seconds("prepare", at(40)) == 32


# Words ------------------------------------------------------------------------------------------------------------


def stats_for(facts: JobFacts, **job_fields) -> JobStats:
    job = Job(pk=1, type_name="t", status=facts.status, deadline=facts.deadline, rate_limit=facts.rate_limit,
              max_parallel=facts.max_parallel, finished_at=facts.finished_at, **job_fields)
    progress = Progress(partitions={"running": 1}, items_total=facts.items_total, items_done=facts.handled,
                        live_leases=facts.live_leases)
    return JobStats(job=job, progress=progress, now=facts.now, projection=project(facts))


def test_the_page_says_late_and_limited_by_the_rate_limit_and_which_limit_would_do():
    stats = stats_for(throttled_mid_run())
    assert "late; limited by the rate limit of 3.0 items/s" in presenters.job_words(stats)["projection"]
    assert presenters.job_words(stats)["advice"] == "a rate limit of 5.5 items/s would meet the deadline"
    assert presenters.throttle_text(stats).startswith("3.0 items/s of 3.0 items/s allowed")


def test_advice_for_one_worker_is_singular_and_names_the_fleet():
    facts = JobFacts(status="running", now=at(100), handled=9000, items_total=10_000, live_leases=1,
                     samples=samples(80, 98, rate=5, handled=8900, live=1), settings_changed_at=at(79),
                     work_seconds=100, max_parallel=1, fleet_workers=2, fleet_free=2, deadline=at(400))
    text = presenters.job_words(stats_for(facts))["advice"]
    assert text.startswith("needs 1 parallel worker to meet the deadline") and "the fleet has 2 workers" in text


def test_a_cancelled_job_reads_not_met_with_how_far_it_got():
    facts = JobFacts(status="cancelled", now=at(100), handled=620, items_total=10_000, work_seconds=60,
                     deadline=at(3600), finished_at=at(60))
    stats = stats_for(facts, error="wrong params")
    stats.cancelled_by = "user:admin"
    assert presenters.job_words(stats)["projection"].endswith(": not met: cancelled at 6.2%")
    assert display.outcome_text(stats) == "Cancelled by admin: wrong params"
    assert display.live_fields(stats)["error"] == "", "a cancel reason is not an error"
