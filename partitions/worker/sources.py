"""Where a claimed partition reads its items from, by keyset pagination after the checkpoint (never OFFSET)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import F, QuerySet, Value
from django.db.models.functions import Mod

from partitions.encoding import to_json
from partitions.models import Partition, SubJob
from partitions.splits import row_compare
from partitions.states import SubJobStatus


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


class KeyRangeSource(ItemSource):
    def __init__(self, queryset: QuerySet, partition: Partition):
        self.queryset, self.key = queryset, partition.key
        if partition.lower is not None:
            self.queryset = self.queryset.filter(row_compare(queryset, self.key, ">=", partition.lower))
        if partition.upper is not None:
            self.queryset = self.queryset.filter(row_compare(queryset, self.key, "<", partition.upper))

    def fetch(self, after: Any, limit: int) -> list:
        qs = self.queryset
        if after is not None:
            qs = qs.filter(row_compare(qs, self.key, ">", after))
        return list(qs.order_by(*self.key)[:limit])

    def checkpoint_of(self, item) -> Any:
        return to_json([getattr(item, name) for name in self.key])


class ModuloSource(ItemSource):
    def __init__(self, queryset: QuerySet, partition: Partition):
        (self.key,) = partition.key
        self.queryset = queryset.alias(_bucket=Mod(F(self.key), Value(partition.modulus))).filter(
            _bucket=partition.remainder
        )

    def fetch(self, after: Any, limit: int) -> list:
        qs = self.queryset if after is None else self.queryset.filter(**{f"{self.key}__gt": after})
        return list(qs.order_by(self.key)[:limit])

    def checkpoint_of(self, item) -> Any:
        return to_json(getattr(item, self.key))


class SubJobSource(ItemSource):
    """Items of an item-list job: the partition's pending SubJob rows in seq order."""

    subjob_backed = True

    def __init__(self, partition: Partition):
        self.partition_id = partition.pk
        self.queryset = SubJob.objects.filter(partition=partition, status=SubJobStatus.PENDING)

    def fetch(self, after: Any, limit: int) -> list:
        qs = self.queryset if after is None else self.queryset.filter(seq__gt=after)
        return list(qs.order_by("seq")[:limit])

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
        self.rows = queryset

    def fetch(self, after: Any, limit: int) -> list:
        subjobs = super().fetch(after, limit)
        rows = self.rows.in_bulk([sj.payload["pk"] for sj in subjobs])
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


def source_for(partition: Partition, queryset_of: Callable[[dict], QuerySet]) -> ItemSource:
    """The item source for a claimed partition; `queryset_of(scope)` gives the rows of its job's scope."""
    if partition.kind == Partition.Kind.ITEMS or partition.scope.get("items"):
        return SubJobSource(partition)
    queryset = queryset_of(partition.scope)
    if partition.kind == Partition.Kind.RANGE:
        return KeyRangeSource(queryset, partition)
    if partition.kind == Partition.Kind.MODULO:
        return ModuloSource(queryset, partition)
    return RowRetrySource(partition, queryset)


def failed_item_subjob(partition: Partition, source: ItemSource, item) -> SubJob:
    """A SubJob row recording a failed row of a range/modulo partition (so it can be retried alone)."""
    return SubJob(
        job_id=partition.job_id, partition=partition, seq=_seq_of(item), key=f"pk:{item.pk}",
        payload={"pk": to_json(item.pk), "checkpoint": source.checkpoint_of(item)},
    )


def _seq_of(item) -> int:
    return item.pk if isinstance(item.pk, int) else 0

