"""Where a claimed partition reads its items from, by keyset pagination after the checkpoint (never OFFSET)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from partitions.core.encoding import to_json
from partitions.core.states import SubJobStatus
from partitions.engine.sql import build, placeholders
from partitions.jobtypes.splits import row_compare
from partitions.models import Partition, SubJob
from partitions.worker.compiled import CompiledRows

if TYPE_CHECKING:
    from partitions.worker.context import JobSetup


class ItemSource:
    """Fetches the next batch after a checkpoint and names each item."""

    #: True when items are SubJob rows whose status the runner updates.
    subjob_backed = False

    def fetch(self, after: Any, limit: int) -> list:
        raise NotImplementedError

    def checkpoint_of(self, item) -> Any:
        raise NotImplementedError

    def ordering_key(self, item) -> str:
        return ""

    def holds(self, items: list) -> bool:
        """Every one of `items` is (still) inside this source's bounds: one query."""
        return self.queryset.filter(pk__in=[item.pk for item in items]).count() == len({item.pk for item in items})

    def subjob_of(self, item) -> SubJob | None:
        return None


class _CompiledSource(ItemSource):
    """Fetches through the job's compiled item query: per fetch, only the bounds and `after` are bound."""

    def __init__(self, queryset: QuerySet, rows: CompiledRows | None, key: Sequence[str], bounds: list[str],
                 params: list[Any]):
        self.scope, self.key = queryset, tuple(key)
        self.rows = rows or CompiledRows(queryset)
        self.bounds, self.params = bounds, params
        order = [self.rows.column(name) for name in self.key]
        self.first = self.rows.statement(bounds, order)
        after = build("row_compare", row=", ".join(order), op=">", values=placeholders(len(order)))
        self.next = self.rows.statement([*bounds, after], order)

    def fetch(self, after: Any, limit: int) -> list:
        if after is None:
            return self.rows.fetch(self.first, self.params, limit)
        after = after if isinstance(after, list) else [after]
        values = [self.rows.prepared(name, value) for name, value in zip(self.key, after, strict=True)]
        return self.rows.fetch(self.next, [*self.params, *values], limit)

    def holds(self, items: list) -> bool:
        pks = {item.pk for item in items}
        return self.rows.count_held(self.bounds, self.params, list(pks)) == len(pks)


class KeyRangeSource(_CompiledSource):
    def __init__(self, queryset: QuerySet, partition: Partition, rows: CompiledRows | None = None):
        rows = rows or CompiledRows(queryset)
        lhs = ", ".join(rows.column(name) for name in partition.key)
        bounds, params = [], []
        for op, values in ((">=", partition.lower), ("<", partition.upper)):
            if values is not None:
                bounds.append(build("row_compare", row=lhs, op=op, values=placeholders(len(values))))
                params += [rows.prepared(name, v) for name, v in zip(partition.key, values, strict=True)]
        super().__init__(queryset, rows, partition.key, bounds, params)
        self.partition = partition

    @property
    def queryset(self) -> QuerySet:
        """The partition's rows as an ORM queryset (what splitting reads and counts)."""
        qs, partition = self.scope, self.partition
        if partition.lower is not None:
            qs = qs.filter(row_compare(qs, self.key, ">=", partition.lower))
        if partition.upper is not None:
            qs = qs.filter(row_compare(qs, self.key, "<", partition.upper))
        return qs

    def checkpoint_of(self, item) -> Any:
        return to_json([getattr(item, name) for name in self.key])


class ModuloSource(_CompiledSource):
    def __init__(self, queryset: QuerySet, partition: Partition, rows: CompiledRows | None = None):
        rows = rows or CompiledRows(queryset)
        (name,) = partition.key
        super().__init__(queryset, rows, partition.key, [build("key_in_bucket", column=rows.column(name))],
                         [partition.modulus, partition.remainder])

    def checkpoint_of(self, item) -> Any:
        return to_json(getattr(item, self.key[0]))


@cache
def _pending_subjobs() -> CompiledRows:
    """Every pending sub-job, compiled once per process; a partition binds its id."""
    return CompiledRows(SubJob.objects.filter(status=SubJobStatus.PENDING))


class SubJobSource(ItemSource):
    """Items of an item-list job: the partition's pending SubJob rows in seq order."""

    subjob_backed = True

    def __init__(self, partition: Partition):
        self.partition_id = partition.pk
        rows = self.rows = _pending_subjobs()
        seq = rows.column("seq")
        bounds = [build("row_compare", row=rows.column("partition"), op="=", values=placeholders(1))]
        self.first = rows.statement(bounds, [seq])
        self.next = rows.statement([*bounds, build("row_compare", row=seq, op=">", values=placeholders(1))], [seq])

    def fetch(self, after: Any, limit: int) -> list:
        if after is None:
            return self.rows.fetch(self.first, [self.partition_id], limit)
        return self.rows.fetch(self.next, [self.partition_id, int(after)], limit)

    def checkpoint_of(self, item) -> Any:
        return item.seq

    def ordering_key(self, item) -> str:
        return item.ordering_key

    def subjob_of(self, item) -> SubJob | None:
        return item

    def holds(self, items: list) -> bool:
        """The batch's sub-jobs all still belong to this partition (whatever their status by now)."""
        ids = {self.subjob_of(item).pk for item in items}
        return SubJob.objects.filter(pk__in=ids, partition_id=self.partition_id).count() == len(ids)


class RowRetrySource(SubJobSource):
    """A retry partition of a range/modulo job: its SubJobs name rows (by pk) to process again."""

    def __init__(self, partition: Partition, queryset: QuerySet):
        super().__init__(partition)
        self.named_rows = queryset

    def fetch(self, after: Any, limit: int) -> list:
        subjobs = super().fetch(after, limit)
        rows = self.named_rows.in_bulk([sj.payload["pk"] for sj in subjobs])
        items = []
        for sj in subjobs:
            row = rows.get(sj.payload["pk"])
            if row is None:  # the row is gone; nothing left to do for it
                row = _Missing(sj.payload["pk"])
            row._subjob = sj
            items.append(row)
        return items

    def checkpoint_of(self, item) -> Any:
        return item._subjob.seq

    def subjob_of(self, item) -> SubJob | None:
        return item._subjob


class _Missing:
    def __init__(self, pk: Any):
        self.pk = pk


def source_for(partition: Partition, setup: JobSetup) -> ItemSource:
    """The item source for a claimed partition, reading the rows of its job's scope (`setup`)."""
    if partition.kind == Partition.Kind.ITEMS or partition.scope.get("items"):
        return SubJobSource(partition)
    queryset = setup.queryset(partition.scope)
    if partition.kind == Partition.Kind.RANGE:
        return KeyRangeSource(queryset, partition, setup.rows(partition.scope))
    if partition.kind == Partition.Kind.MODULO:
        return ModuloSource(queryset, partition, setup.rows(partition.scope))
    return RowRetrySource(partition, queryset)


def failed_item_subjob(partition: Partition, source: ItemSource, item) -> SubJob:
    """A SubJob row recording a failed row of a range/modulo partition (so it can be retried alone)."""
    return SubJob(
        job_id=partition.job_id, partition=partition, seq=_seq_of(item), key=f"pk:{item.pk}",
        payload={"pk": to_json(item.pk), "checkpoint": source.checkpoint_of(item)},
    )


def _seq_of(item) -> int:
    return item.pk if isinstance(item.pk, int) else 0

