"""Splitting a partition's remaining work: for idle workers (no long tail), and before retrying a partition
that failed by timeout (halve and retry).

A split is planned from a snapshot (which key cuts the remainder near its middle, by the partition's
estimate) and applied in one transaction that locks the partition row, checks the plan still holds (same
bounds version, the cut still ahead of the checkpoint) and writes both halves:

- range `[lower, upper)` with checkpoint c: the partition keeps `(c, cut)`, a new pending partition gets
  `[cut, upper)`;
- modulo `(N, r)`: the partition becomes `(2N, r)`, a new one `(2N, r + N)` from the same checkpoint;
- items: the pending sub-jobs from the cut on move to a new partition, whole ordering-key groups only (a
  key with a pending item before the cut keeps all of them), so each key's items stay together, in order;
  the cut lies past what the holder may have in flight.

The holder keeps its lease. Each split bumps `bounds_version`; the holder's checkpoint carries the version
its batch was read under. On a mismatch the holder re-reads its bounds: a batch still inside them commits
as it is, and one that read past them writes nothing (`BoundsMoved`): an atomic batch rolls back whole and
runs again within the new bounds (exactly once), a non-atomic one keeps its at-least-once contract.
Estimates move with the work: the job's total never changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Max

from partitions import conf
from partitions.core.encoding import to_json
from partitions.core.events import EventType
from partitions.core.states import HANDLED_COUNTERS, JobStatus, PartitionStatus, SubJobStatus
from partitions.engine import claiming
from partitions.engine.claiming import live_lease_q
from partitions.engine.lifecycle import Actor, event
from partitions.engine.sql import queries
from partitions.jobtypes.splits import row_compare
from partitions.models import Partition, SubJob
from partitions.worker.context import JobSetup, job_setup
from partitions.worker.sources import KeyRangeSource

log = logging.getLogger(__name__)

Kind = Partition.Kind
SPLITTABLE = (Kind.RANGE, Kind.MODULO, Kind.ITEMS)


@dataclass(frozen=True)
class SplitPlan:
    """Where to cut one partition, as planned from a snapshot (`apply` checks it still holds)."""

    partition_id: int
    bounds_version: int
    kind: str
    #: range: the key (JSON) the new partition starts at; items: the first sub-job seq that moves.
    cut: Any
    moved_estimate: int


def remaining(partition: Partition) -> int:
    """Items left by the partition's estimate."""
    return max(0, partition.estimated_items - sum(getattr(partition, counter) for counter in HANDLED_COUNTERS))


def min_split_items(job_type, partition: Partition) -> int:
    """The fewest items left that make a partition worth splitting: SPLIT_MIN_BATCHES of its batches, and
    the job type's own floor."""
    batch = partition.batch_size or job_type.batch_size
    return max(job_type.min_split_items, conf.get("SPLIT_MIN_BATCHES") * batch, 2)


# Planning ------------------------------------------------------------------------------------------------------

def plan(partition: Partition, setup: JobSetup) -> SplitPlan | None:
    """Where to cut `partition`'s remainder near its middle; None when it is not worth it or cannot be."""
    left = remaining(partition)
    if partition.kind not in SPLITTABLE or left < min_split_items(setup.job_type, partition):
        return None
    half = left // 2
    if partition.kind == Kind.MODULO:
        return SplitPlan(partition.pk, partition.bounds_version, partition.kind, None, left - half)
    if partition.kind == Kind.ITEMS:
        return _plan_items(partition, setup, half)
    return _plan_range(partition, setup, half, left)


def _plan_range(partition: Partition, setup: JobSetup, half: int, left: int) -> SplitPlan | None:
    source = KeyRangeSource(setup.queryset(partition.scope), partition)
    after = source.queryset
    if partition.checkpoint is not None:
        after = after.filter(row_compare(after, source.key, ">", partition.checkpoint))
    ordered = after.order_by(*source.key).values_list(*source.key)
    row = ordered[half:half + 1].first()
    if row is None:  # fewer rows than estimated: cut the rows there are
        counted = ordered[:left].count()
        half, left = counted // 2, counted
        row = ordered[half:half + 1].first() if half else None
        if row is None or left < 2:
            return None
    return SplitPlan(partition.pk, partition.bounds_version, partition.kind, to_json(list(row)), left - half)


def _plan_items(partition: Partition, setup: JobSetup, half: int) -> SplitPlan | None:
    """The cut is past what the holder may have in flight (two batches and its item slots after the
    checkpoint), so a moved ordering-key group has no item running in the old partition."""
    in_flight = 2 * (partition.batch_size or setup.job_type.batch_size) + setup.job_type.concurrency(setup.params)
    pending = SubJob.objects.filter(partition_id=partition.pk, status=SubJobStatus.PENDING)
    if partition.checkpoint is not None:
        pending = pending.filter(seq__gt=partition.checkpoint)
    offset = max(half, in_flight)
    cut = pending.order_by("seq").values_list("seq", flat=True)[offset:offset + 1].first()
    return None if cut is None else SplitPlan(partition.pk, partition.bounds_version, Kind.ITEMS, cut, 0)


# Applying ------------------------------------------------------------------------------------------------------

def apply(split: SplitPlan, setup: JobSetup, *, actor: Any, why: str) -> Partition | None:
    """Apply a plan in one transaction; the new partition, or None when the plan no longer holds (the holder
    checkpointed past the cut, another split came first, the partition finished)."""
    with transaction.atomic():
        old = claiming.partition_locked_for_split(split.partition_id, split.bounds_version)
        if old is None:
            return None
        before = old.bounds_display
        new = Partition(job_id=old.job_id, kind=old.kind, key=old.key, scope=old.scope, split_from=old,
                        max_attempts=old.max_attempts, batch_size=old.batch_size)
        if split.kind == Kind.RANGE:
            if not _still_ahead(old, setup, split.cut):
                return None
            new.lower, new.upper, old.upper = split.cut, old.upper, split.cut
            moved = split.moved_estimate
        elif split.kind == Kind.MODULO:
            new.modulus, new.remainder, new.checkpoint = old.modulus * 2, old.remainder + old.modulus, old.checkpoint
            old.modulus *= 2
            moved = split.moved_estimate
        else:
            moved = None
        moved = min(moved, remaining(old)) if moved is not None else 0
        new.seq = (Partition.objects.filter(job_id=old.job_id).aggregate(m=Max("seq"))["m"] or 0) + 1
        new.estimated_items = moved
        new.save()
        if split.kind == Kind.ITEMS:
            moved = _move_items(old, new, split.cut)
            if not moved:
                transaction.set_rollback(True)
                return None
            Partition.objects.filter(pk=new.pk).update(estimated_items=moved)
            new.estimated_items = moved
        Partition.objects.filter(pk=old.pk).update(
            upper=old.upper, modulus=old.modulus, estimated_items=F("estimated_items") - moved,
            bounds_version=F("bounds_version") + 1)
        event(old.job_id, EventType.PARTITION_SPLIT, Actor.of(actor), {
            "why": why, "from": old.seq, "to": new.seq, "before": before,
            "kept": Partition.objects.get(pk=old.pk).bounds_display, "new": new.bounds_display, "moved": moved,
        }, partition_id=old.pk)
    log.info("split partition %s (job %s) %s: %s items to new partition %s", old.pk, old.job_id, why, moved, new.pk)
    return new


def _still_ahead(old: Partition, setup: JobSetup, cut: Any) -> bool:
    """The cut still leaves the holder a row before it, after its checkpoint (read under the row lock)."""
    queryset = KeyRangeSource(setup.queryset(old.scope), old).queryset
    between = queryset.filter(row_compare(queryset, old.key, "<", cut))
    if old.checkpoint is not None:
        between = between.filter(row_compare(queryset, old.key, ">", old.checkpoint))
    return between.exists()


def _move_items(old: Partition, new: Partition, cut: int) -> int:
    """Move the pending sub-jobs from `cut` on, whole ordering-key groups only; how many moved."""
    with connection.cursor() as cursor:
        cursor.execute(queries["subjobs_move_from_cut"], {"old": old.pk, "new": new.pk, "cut": cut,
                                                   "after": old.checkpoint})
        return cursor.rowcount


# Who splits ----------------------------------------------------------------------------------------------------

#: Running partitions considered per idle moment, most work left first.
CANDIDATES = 5
#: Looks at the candidates again after a split lost a race (idle workers arriving together), at most.
RACE_ROUNDS = 3


def split_for_idle(*, worker_id: str, job_id: int | None = None, cache: dict | None = None) -> Partition | None:
    """An idle drain's turn: split the running partition with the most work left (of a running job that may
    run one more partition), so the drain can claim its second half. None when nothing is worth splitting."""
    if not conf.get("SPLIT_RUNNING"):
        return None
    for _ in range(RACE_ROUNDS):
        raced = False
        for partition in _candidates(job_id):
            try:
                setup = job_setup(partition.job_id, cache)
            except Exception:  # unknown type or params: nothing of this job is split
                continue
            if not setup.job_type.split_when_idle or (split := plan(partition, setup)) is None:
                continue
            if (new := apply(split, setup, actor=worker_id, why="idle workers")) is not None:
                return new
            raced = True  # another idle worker split it first, or its holder moved on: look again
        if not raced:
            return None
    return None


def _candidates(job_id: int | None) -> list[Partition]:
    running = Partition.objects.filter(live_lease_q(), status=PartitionStatus.RUNNING, kind__in=SPLITTABLE,
                                       job__status=JobStatus.RUNNING)
    if job_id is not None:
        running = running.filter(job_id=job_id)
    left = F("estimated_items") - claiming.handled_items()
    rows = list(running.alias(left=left).filter(left__gte=2).order_by("-job__priority", "-left")[:CANDIDATES * 4])
    room = claiming.jobs_with_free_slot(p.job_id for p in rows) if rows else set()  # the new one needs a slot
    return [p for p in rows if p.job_id in room][:CANDIDATES]


def halve_after_failure(partition_id: int, *, actor: Any, why: str) -> Partition | None:
    """Split a partition that failed by timeout before its next attempt (GitLab's split-and-retry)."""
    partition = Partition.objects.filter(pk=partition_id, status=PartitionStatus.PENDING).first()
    if partition is None:
        return None
    try:
        setup = job_setup(partition.job_id)
    except Exception:
        return None
    if not setup.job_type.split_when_failing:
        return None
    split = plan(partition, setup)
    return None if split is None else apply(split, setup, actor=actor, why=why)

