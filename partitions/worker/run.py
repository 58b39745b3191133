"""Executes one claimed partition, batch by batch from its checkpoint, until it ends with an Outcome."""

from __future__ import annotations

import logging
import time
import traceback as tb
from contextlib import nullcontext

from django.db import DatabaseError, transaction
from django.db.models.functions import Now

from partitions import conf
from partitions.core.events import SUBJOB_PROBLEMS, EventType
from partitions.core.exceptions import BoundsMoved, CancelJob, LeaseLost, Retry, SkipItem, error_line
from partitions.core.limits import SHORT_TEXT, clip
from partitions.core.states import JobStatus, SubJobStatus
from partitions.engine import claiming, tracing
from partitions.engine.lifecycle import Actor, event, event_row, events_insert, subjobs_finish
from partitions.engine.throttling import JobControls
from partitions.jobtypes.reasons import failure_of
from partitions.models import Partition, SubJob
from partitions.worker import pulse
from partitions.worker.concurrency import ItemPool, ItemResult
from partitions.worker.context import Context, JobSetup, job_setup
from partitions.worker.feeding import feed_items
from partitions.worker.invoke import JobCode
from partitions.worker.outcomes import Outcome
from partitions.worker.pacing import Pacer
from partitions.worker.renewer import Held, renewer
from partitions.worker.sizing import BatchSizer, timed_out
from partitions.worker.sources import ItemSource, failed_item_subjob, source_for

log = logging.getLogger(__name__)

#: With item concurrency, the longest a completed prefix waits for its checkpoint (also taken at each batch end).
CHECKPOINT_EVERY_SECONDS = 1.0
#: Why a run released its partition when the drain's budget had no room for more work (the drain then ends).
BUDGET_SPENT = "drain budget spent"
#: What a split changes on the partition it splits (re-read by the holder when its checkpoint is refused).
BOUNDS_FIELDS = ("lower", "upper", "modulus", "remainder", "bounds_version", "estimated_items")


class PartitionRun:
    """State of one run of one claimed partition."""

    def __init__(self, partition: Partition, *, worker_id: str, deadline: float | None, setup: JobSetup):
        self.partition, self.worker_id, self.deadline = partition, worker_id, deadline
        self.job, self.job_type, self.params = setup.job, setup.job_type, setup.params
        self.lease_seconds = self.job_type.lease_seconds or conf.get("LEASE_SECONDS")
        self.source: ItemSource = source_for(partition, setup)
        self.ctx = Context(job=self.job, partition=partition, params=self.params, worker_id=worker_id)
        self.token = partition.lease_token
        self.checkpoint = partition.checkpoint
        self.setup = setup
        self.failed_total = partition.failed_items
        #: As the claim returned them (a partition read otherwise: from the job as cached for this drain).
        self.claimed_controls: JobControls = getattr(partition, "job_controls", None) or JobControls(
            self.job.status, self.job.rate_limit, self.job.pause_ms, self.job.ignore_health,
            self.job.throttled_since is not None)
        jt, self.learned = self.job_type, setup.learned
        start = jt.batch_size
        if jt.target_batch_seconds:  # resume what this partition, or this drain's last one, adapted to
            start = partition.batch_size or self.learned.get("batch_size") or start
        self.sizer = BatchSizer(start, target_seconds=jt.target_batch_seconds, low=jt.min_batch_size,
                                high=max(jt.max_batch_size, jt.batch_size))
        self.stats = {"done": 0, "failed": 0, "skipped": 0, "batches": 0}

    def execute(self, held: Held | None) -> Outcome:
        """Run to the end; `held`: the lease as the drain that claimed it holds it (None: held for this run)."""
        with renewer().holding(self.partition.pk, self.token, self.lease_seconds, held) as keeper:
            self.pacer = Pacer(self.job, self.job_type, self.claimed_controls, worker_id=self.worker_id,
                               keeper=keeper, deadline=self.deadline, learned=self.learned)
            self.code = JobCode(self.job_type, self.ctx, item_savepoints=self.job_type.atomic,
                                observe=self.pacer.observe)
            concurrency = self.job_type.concurrency(self.params)
            pool = ItemPool(concurrency) if concurrency > 1 else None
            try:
                with pool or nullcontext():
                    return self._loop(keeper, pool)
            except LeaseLost:
                return Outcome.lease_lost()
            except Retry as exc:
                return Outcome.retry(exc.reason, after=exc.after)
            except CancelJob as exc:
                return Outcome.cancel_job(exc.reason)
            except Exception as exc:
                return Outcome.failed(error_line(exc), traceback=tb.format_exc(), timed_out=timed_out(exc))

    def _loop(self, keeper: Held, pool: ItemPool | None) -> Outcome:
        if pool is not None:
            return self._feed(keeper, pool)
        while not (outcome := self._boundary(keeper)):
            if not self._next_batch():
                return Outcome.succeeded(self.stats)
            self.stats["batches"] += 1
        return outcome

    def _next_batch(self) -> bool:
        """Fetch, pace and run the next batch; False when nothing is left. A batch stopped by a statement or
        lock timeout is rolled back and retried at half the size, until the size is at its minimum."""
        while True:
            try:
                items = self._fetch(self.checkpoint, self.pacer.batch_cap(self.sizer.size))
                if not items:
                    return False
                if not self.pacer.admit(len(items)):
                    return True  # not processed: the boundary says why (budget, lease, job stopped)
                started = time.perf_counter()
                with transaction.atomic() if self.job_type.atomic else nullcontext():
                    self._run_batch(items)
            except BoundsMoved:  # a split moved our bounds while this batch ran: it rolled back; again within them
                self._reload_bounds()
                continue
            except DatabaseError as exc:
                if not (timed_out(exc) and self.sizer.halve()):
                    raise
                log.warning("partition %s: a batch timed out (%s); retrying with %d items",
                            self.partition.pk, error_line(exc), self.sizer.size)
                self._report_size(f"timeout: {error_line(exc)}")
                continue
            self.sizer.observe(len(items), time.perf_counter() - started)
            self.learned["batch_size"] = self.sizer.size
            self._report_size("adapted to batch time")
            return True

    def _fetch(self, after, limit: int) -> list:
        """The next batch after `after`, with what the job type reads for it in bulk (`before_batch`)."""
        return self.code.before_batch(self.source.fetch(after, limit))

    def _reload_bounds(self) -> None:
        """Read the bounds a split left this partition (the lease is still ours) and read items within them."""
        fresh = (Partition.objects.filter(pk=self.partition.pk, lease_token=self.token, status="running")
                 .only(*BOUNDS_FIELDS).first())
        if fresh is None:
            raise LeaseLost(self.partition.pk, self.token)
        for name in BOUNDS_FIELDS:
            setattr(self.partition, name, getattr(fresh, name))
        self.source = source_for(self.partition, self.setup)
        log.info("partition %s: split; now %s", self.partition.pk, self.partition.bounds_display)

    def _report_size(self, why: str) -> None:
        if (size := self.sizer.report()) is not None:
            event(self.job.pk, EventType.BATCH_SIZE_CHANGED, Actor.of(self.worker_id), {"batch_size": size, "why": why},
                  partition_id=self.partition.pk)

    def _boundary(self, keeper: Held) -> Outcome | None:
        """Before each batch, after the pacer's gate (pause, health): why the run stops here (skip policy,
        pause, cancel, budget), or None to go on."""
        if self.failed_total > self.job_type.max_item_failures:
            return Outcome.failed(f"{self.failed_total} items failed, more than max_item_failures="
                                  f"{self.job_type.max_item_failures}", final=True, stats=self.stats)
        if self.pacer.controls.status == JobStatus.RUNNING and not keeper.lost:
            self.pacer.gate()
        if stop := self._stop_reason(keeper):
            return stop
        if pulse.should_yield(self.job.pk, self.partition.pk):  # throughput sample; the time/cost knob
            return Outcome.released("max_parallel lowered", self.stats)
        return None

    def _stop_reason(self, keeper: Held) -> Outcome | None:
        """Why no more work may start now (the job stopped, the lease is lost, the budget has no room), or None."""
        status = self.pacer.controls.status
        if status == JobStatus.PAUSED:
            return Outcome.released("job paused", self.stats)
        if status in {JobStatus.CANCELLED, JobStatus.FAILED}:
            return Outcome.cancelled(f"job {status}", self.stats)
        if keeper.lost:
            raise LeaseLost(self.partition.pk, self.token)
        if not self.pacer.can_start():
            return Outcome.released(BUDGET_SPENT, self.stats)
        return None

    def _run_batch(self, items: list) -> None:
        # The first item always runs; the next only while it fits in the drain's budget (the batch is admitted:
        # only the unit must fit).
        self.code.process(items, commit=self._commit, may_run=self.pacer.can_run, unstarted=self.pacer.release)

    def _feed(self, keeper: Held, pool: ItemPool) -> Outcome:
        """Items in flight across batch edges; each checkpoint of the completed prefix is a stop boundary."""
        self.fed_stop: Outcome | None = None
        moved = False

        def commit(items: list, results: list[ItemResult]) -> bool:
            nonlocal moved
            if moved:  # nothing after a refused piece may commit: the checkpoint covers a contiguous prefix
                return False
            try:
                self._commit(items, results)
            except BoundsMoved:  # a split: finish what is in flight uncommitted, then read the new bounds
                moved = True
                return False
            self.fed_stop = self.fed_stop or self._boundary(keeper)
            return self.fed_stop is None

        if stop := self._boundary(keeper):
            return stop
        while True:
            self.stats["batches"] += feed_items(
                pool, self.source, fetch=self._fetch, after=self.checkpoint,
                batch_size=lambda: self.pacer.batch_cap(self.sizer.size),
                admit=lambda n: self._fed_may(self.pacer.admit(n), keeper),
                may_start=lambda: self._fed_may(self.pacer.can_run(), keeper), release=self.pacer.release,
                run_item=self.code.run_item, commit=commit, every=CHECKPOINT_EVERY_SECONDS)
            if not moved or self.fed_stop:
                return self.fed_stop or Outcome.succeeded(self.stats)
            self._reload_bounds()
            moved = False

    def _fed_may(self, allowed: bool, keeper: Held) -> bool:
        """The feeder may fetch or start no more (budget, rate limit, lease, job stopped): record why."""
        if not allowed and self.fed_stop is None:
            self.fed_stop = self._stop_reason(keeper) or Outcome.released(BUDGET_SPENT, self.stats)
        return allowed

    def _commit(self, items: list, results: list[ItemResult]) -> None:
        """Record item outcomes and advance the checkpoint over `items` (fenced)."""
        ok = [(item, r) for item, r in zip(items, results, strict=True) if r.error is None]
        skipped = [(item, r) for item, r in zip(items, results, strict=True) if isinstance(r.error, SkipItem)]
        failed = [(item, r) for item, r in zip(items, results, strict=True)
                  if r.error is not None and not isinstance(r.error, SkipItem)]
        # Inside an atomic batch this joins the batch's transaction (no savepoint: a refused checkpoint rolls
        # the whole batch back anyway); otherwise it is the checkpoint's own transaction.
        with transaction.atomic(savepoint=False):
            self.code.on_checkpoint(items, results)
            if self.source.subjob_backed:
                self._finish_subjobs(ok, SubJobStatus.SUCCEEDED)
            self._record_problems(skipped, SubJobStatus.SKIPPED)
            self._record_problems(failed, SubJobStatus.FAILED)
            self.pacer.controls = self._checkpoint(items, done=len(ok), failed=len(failed), skipped=len(skipped))
        self.checkpoint = self.source.checkpoint_of(items[-1])
        self.failed_total += len(failed)
        for name, n in (("done", len(ok)), ("failed", len(failed)), ("skipped", len(skipped))):
            self.stats[name] += n

    def _checkpoint(self, items: list, **counts: int) -> JobControls:
        """The fenced checkpoint past `items`. When a split moved the bounds since the batch was read, it
        commits only if every item of the batch is still inside the new bounds (read in this transaction,
        after the split's commit); a batch that read past them raises BoundsMoved and is run again."""
        def write() -> JobControls:
            return claiming.partition_checkpoint(
                self.partition.pk, self.token, checkpoint=self.source.checkpoint_of(items[-1]),
                lease_seconds=self.lease_seconds, batch_size=self.sizer.size,
                bounds_version=self.partition.bounds_version, **counts)

        try:
            controls = write()
        except BoundsMoved:
            self._reload_bounds()
            if not self.source.holds(items):
                raise
            controls = write()
        if tracing.active():
            tracing.event("checkpoint", {f"items.{name}": n for name, n in counts.items()})
        return controls

    def _finish_subjobs(self, pairs: list, status: str) -> None:
        subjobs_finish([
            (self.source.subjob_of(item).pk, result.duration_ms, result.value, _error_text(result), result.traceback,
             *_failure(result))
            for item, result in pairs
        ], status)

    def _record_problems(self, pairs: list, status: str) -> None:
        if not pairs:
            return
        actor = Actor.of(self.worker_id)
        if self.source.subjob_backed:
            self._finish_subjobs(pairs, status)
            subjob_ids = [self.source.subjob_of(item).pk for item, _ in pairs]
        else:
            rows = [failed_item_subjob(self.partition, self.source, item) for item, _ in pairs]
            for row, (_, result) in zip(rows, pairs, strict=True):
                row.status, row.error, row.traceback, row.attempts = status, _error_text(result), result.traceback, 1
                row.duration_ms = result.duration_ms
                row.error_class, row.reason = _failure(result)
                row.first_seen_at = row.last_seen_at = Now()
            subjob_ids = [row.pk for row in SubJob.objects.bulk_create(rows)]
        events_insert([
            event_row(self.job.pk, SUBJOB_PROBLEMS[status], actor, {"error": clip(_error_text(result), SHORT_TEXT)},
                      partition_id=self.partition.pk, subjob_id=sid)
            for sid, (_, result) in zip(subjob_ids, pairs, strict=True)
        ])


def _error_text(result: ItemResult) -> str:
    if result.error is None:
        return ""
    if isinstance(result.error, SkipItem):
        return error_line(result.error.reason)
    return error_line(result.error)


def _failure(result: ItemResult) -> tuple[str, str]:
    """The ledger's (error class, reason) of an item's outcome; ("", "") for a success."""
    return ("", "") if result.error is None else failure_of(result.error)


def run_partition(partition: Partition, *, worker_id: str, deadline: float | None = None,
                  cache: dict[int, JobSetup] | None = None, held: Held | None = None) -> Outcome:
    """Run a claimed partition until done, failed, released (budget/pause) or lease lost. `held`: its lease as
    its claimer (a drain) holds it; None: the run holds the lease itself."""
    try:
        run = PartitionRun(partition, worker_id=worker_id, deadline=deadline,
                           setup=job_setup(partition.job_id, cache))
    except Exception as exc:  # unknown type, params no longer valid, queryset errors: fail this attempt
        return Outcome.failed(error_line(exc), traceback=tb.format_exc())
    return run.execute(held)


