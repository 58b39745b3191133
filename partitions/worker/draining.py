"""The drain loop: claim partitions and run them until the time budget is spent (no django-q2 here)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from partitions import conf
from partitions.core.logs import log_context, partition_fields
from partitions.core.waits import seconds_left, sleep_for
from partitions.engine import claiming, dispatch, tracing
from partitions.worker import splitting
from partitions.worker.commit import apply_outcomes
from partitions.worker.outcomes import OutcomeKind
from partitions.worker.renewer import Held, renewer
from partitions.worker.run import BUDGET_SPENT, run_partition

_PROCESS_TAG = uuid.uuid4().hex[:6]


def worker_id() -> str:
    """`host:pid:tag`, unique per process, readable in the admin's lease column."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS_TAG}"


#: A standby drain looks for lapsed leases this often (one query per look, for the whole fleet).
STANDBY_POLL_SECONDS = 1.0
#: How long one drain task stands by before it hands its worker back (re-enqueued, behind queued tasks).
STANDBY_SECONDS = 10.0


@dataclass
class DrainReport:
    partitions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Stood by until the end with leases still held elsewhere: another drain should take over the watch.
    watch_goes_on: bool = False


#: Only partitions this short (the claim's round trip is then most of their cost) are claimed several at a
#: time: as many as the drain expects to finish within HOLD_SECONDS, up to CLAIM_BATCH. A partition that runs
#: longer than HOLD_SECONDS makes it hand back what it claimed but has not started: a worker never sits on
#: leases that idle workers could run. Completions wait at most HOLD_SECONDS to be written together.
TINY_PARTITION_SECONDS = 0.01
HOLD_SECONDS = 0.25


def drain(*, budget_seconds: float | None = None, job_id: int | None = None, worker: str | None = None,
          claim_batch: int | None = None, standby: bool = True) -> DrainReport:
    """Claim and run partitions until none is claimable or the budget is spent.

    Claims one partition at a time, or up to `claim_batch` while partitions turn out fast (then they are
    completed together, in one statement), so a worker never holds leases on slow partitions it is not
    running. With nothing to claim while leases are held elsewhere, one drain in the fleet stands by (unless
    `standby` is off) and claims a partition as soon as its holder's backend goes away (a dead worker) or
    its lease or backoff ends.
    """
    budget = conf.get("DRAIN_BUDGET_SECONDS") if budget_seconds is None else budget_seconds
    state = _DrainState(worker or worker_id(), time.monotonic() + budget, job_id, standby)
    try:
        with renewer().session(), log_context(worker=state.worker):
            state.loop(claim_batch or conf.get("CLAIM_BATCH"))
    finally:
        if state.standby_until is not None:
            claiming.standby_release()
    return state.report


class _DrainState:
    """The state of one drain: its budget, what it ran, its job setups and whether it stands by."""

    def __init__(self, worker: str, deadline: float, job_id: int | None, standby: bool):
        self.worker, self.deadline, self.job_id, self.standby = worker, deadline, job_id, standby
        self.lease = conf.get("LEASE_SECONDS")
        self.report = DrainReport()
        self.setups: dict = {}  # job id -> JobSetup, for this drain only
        self.spans: dict = {}  # partition id -> its run's span until its outcome is written (tracing)
        self.standby_until: float | None = None

    def loop(self, claim_batch: int) -> None:
        per_partition = HOLD_SECONDS  # seconds one partition takes, smoothed (never 0); unknown: assume slow
        while time.monotonic() < self.deadline:
            tiny = per_partition < TINY_PARTITION_SECONDS
            limit = min(claim_batch, int(HOLD_SECONDS / per_partition)) if tiny else 1
            claimed = claiming.partition_claim(worker_id=self.worker, lease_seconds=self.lease, job_id=self.job_id,
                                               limit=limit)
            if not claimed:
                if splitting.split_for_idle(worker_id=self.worker, job_id=self.job_id, cache=self.setups):
                    continue  # claim the half it split off
                if self.idle():
                    continue
                return
            if self.standby_until is not None:  # working again: another drain may watch the fleet
                claiming.standby_release()
                self.standby_until = None
            dispatch.work_claimed()
            ran, seconds = self.run_claimed(claimed)
            if ran:
                per_partition = max(1e-4, 0.5 * per_partition + 0.5 * seconds / ran)

    def idle(self) -> bool:
        """Nothing to claim: wait for what becomes claimable soon, or stand by; False when the drain should end."""
        # A lease about to expire (its holder missed renewals: renewals keep at least two thirds of a lease
        # ahead) or a backoff about to end: wait for it instead of leaving the partition until the next tick.
        # A healthy lease is only watched by the standby, for its holder's death.
        wait = claiming.seconds_until_claimable(self.job_id)
        left = seconds_left(self.deadline)
        if wait is not None and wait <= min(self.lease / 2, left):
            sleep_for(wait + 0.05)
            return True
        if wait is None or not self.standby or not conf.get("DETECT_DEAD_BACKENDS"):
            return False
        if self.standby_until is None:
            if not claiming.standby_acquire():
                return False
            self.standby_until = time.monotonic() + STANDBY_SECONDS
        if time.monotonic() >= self.standby_until:
            self.report.watch_goes_on = True
            return False
        sleep_for(min(STANDBY_POLL_SECONDS, seconds_left(self.deadline)))
        return True

    def run_claimed(self, claimed: list) -> tuple[int, float]:
        """Run claimed partitions in order; how many ran and the seconds they took. The drain holds their leases
        (renewed while they wait their turn) and hands each run its own."""
        holds = [renewer().hold(p.pk, p.lease_token, self.lease) for p in claimed]
        try:
            return self._run_held(claimed, holds)
        finally:
            for held in holds:
                renewer().release(held)

    def _run_held(self, claimed: list, holds: list[Held]) -> tuple[int, float]:
        finished: list[tuple] = []
        began = oldest = time.monotonic()
        ran, slow = 0, False
        for index, partition in enumerate(claimed):
            if time.monotonic() >= self.deadline or slow:
                reason = "a partition before it was slow" if slow else "drain budget spent before start"
                for rest in claimed[index:]:
                    claiming.partition_release(rest.pk, rest.lease_token, actor=self.worker, reason=reason)
                break
            started = time.monotonic()
            if (span := _partition_span(partition, self.worker)) is not None:
                self.spans[partition.pk] = span
            with log_context(**partition_fields(partition)), tracing.use(span):
                outcome = run_partition(partition, worker_id=self.worker, deadline=self.deadline, cache=self.setups,
                                        held=holds[index])
            slow = time.monotonic() - started > HOLD_SECONDS
            if outcome.kind == OutcomeKind.RELEASED and outcome.reason == BUDGET_SPENT:
                self.deadline = min(self.deadline, time.monotonic())  # no room for more work: the drain ends
            ran += 1
            self.report.partitions += 1
            self.report.outcomes[outcome.kind.value] += 1  # plain names: a pickled task result outlives the code
            finished.append((partition, outcome))
            if time.monotonic() - oldest >= HOLD_SECONDS:
                self.record(finished)
                finished, oldest = [], time.monotonic()
        self.record(finished)
        return ran, time.monotonic() - began

    def record(self, finished: list[tuple]) -> None:
        for job_id in sorted(apply_outcomes(finished, worker_id=self.worker, cache=self.setups)):
            dispatch.job_drained(job_id)
        for partition, outcome in finished if self.spans else ():  # each run's span ends with its completion
            tracing.end(self.spans.pop(partition.pk, None), {
                "partition.outcome": outcome.kind.value, **{f"items.{k}": outcome.stats.get(k, 0)
                                                            for k in ("done", "failed", "skipped")}})


def _partition_span(partition, worker: str):
    """The span of one run of a claimed partition, under its job's trace: claimed, checkpoints, completed."""
    if not tracing.active():
        return None
    begun = tracing.start("partitions.partition.drain", {
        "job.id": partition.job_id, "partition.id": partition.pk, "partition.seq": partition.seq,
        "partition.attempt": partition.attempts, "lease.token": partition.lease_token, "worker": worker,
    }, parent=tracing.job_parent(partition.job_id))
    with tracing.use(begun):
        tracing.event("claimed", {"checkpoint": partition.checkpoint})
    return begun
