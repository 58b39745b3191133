"""Every way a partition's run can end has one constructor (`Outcome.<kind>(…)`) and one transition
(`worker/commit.HANDLERS`; successes complete together, in one statement)."""

from __future__ import annotations

from partitions.worker.commit import HANDLERS
from partitions.worker.outcomes import Outcome, OutcomeKind


def test_every_kind_but_success_has_its_transition_in_the_table():
    assert set(HANDLERS) == set(OutcomeKind) - {OutcomeKind.SUCCEEDED}


def test_each_constructor_makes_its_own_kind_and_keeps_the_runs_own_counters():
    stats = {"done": 1, "failed": 0, "skipped": 0, "batches": 1}
    made = {
        OutcomeKind.SUCCEEDED: Outcome.succeeded(stats),
        OutcomeKind.RELEASED: Outcome.released("job paused", stats),
        OutcomeKind.RETRY: Outcome.retry("later", after=2.5),
        OutcomeKind.FAILED: Outcome.failed("RuntimeError: boom", traceback="Traceback …", stats=stats),
        OutcomeKind.CANCELLED: Outcome.cancelled("job cancelled", stats),
        OutcomeKind.CANCEL_JOB: Outcome.cancel_job("asked"),
        OutcomeKind.LEASE_LOST: Outcome.lease_lost(),
    }
    assert set(made) == set(OutcomeKind)
    assert all(outcome.kind is kind for kind, outcome in made.items())
    assert made[OutcomeKind.RETRY].retry_after == 2.5 and made[OutcomeKind.FAILED].traceback == "Traceback …"
    stats["done"] += 1  # a fed run's stop outcome is made before its last items finish: it sees their counts
    assert made[OutcomeKind.SUCCEEDED].stats["done"] == made[OutcomeKind.RELEASED].stats["done"] == 2
    assert Outcome.failed("x").stats == {} and not Outcome.failed("x").final
