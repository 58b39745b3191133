"""How a job's work is cut into partitions: key ranges, modulo buckets, or chunks of sub-job items.

A split only plans (returns PartitionPlans); nothing is written here, so the
same call serves the dry-run preview and the real plan.

The key-range walk and its row comparisons depend on the job type's own queryset and key columns, so they are
built at run time, from the registry's templates (`partitions/engine/sql/runtime.sql`) and the ORM's compiled SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import BooleanField, Count, F, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Mod

from partitions.core.encoding import to_json
from partitions.core.exceptions import JobCodeError
from partitions.engine.sql import build, placeholders

#: The comparisons a keyset bound may use.
ROW_OPERATORS = frozenset({"<", "<=", "=", ">=", ">"})


@dataclass(frozen=True)
class ItemSpec:
    """One sub-job to create: a stable key, a JSON payload, and an optional ordering key."""

    key: str
    payload: dict = field(default_factory=dict)
    ordering_key: str = ""


@dataclass
class PartitionPlan:
    """A partition before it is written."""

    kind: str
    estimated_items: int
    lower: list | None = None
    upper: list | None = None
    modulus: int | None = None
    remainder: int | None = None
    key: list[str] | None = None
    scope: dict = field(default_factory=dict)
    items: list[ItemSpec] = field(default_factory=list)


def key_columns(queryset: QuerySet, key: Sequence[str]) -> str:
    """`"table"."col", …` for a row comparison on the key."""
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    cols = [queryset.model._meta.get_field(name).column for name in key]
    return ", ".join(f"{table}.{connection.ops.quote_name(col)}" for col in cols)


def key_values(queryset: QuerySet, key: Sequence[str], values: Sequence[Any]) -> list[Any]:
    """JSON key values back to Python values of the key's fields."""
    return [queryset.model._meta.get_field(name).to_python(v) for name, v in zip(key, values, strict=True)]


def row_compare(queryset: QuerySet, key: Sequence[str], op: str, values: Sequence[Any] | None,
                raw_rhs: str | None = None) -> RawSQL:
    """A boolean `(k1, k2) op (v1, v2)` row comparison usable in .filter()."""
    if op not in ROW_OPERATORS:
        raise ValueError(f"not a row comparison: {op!r}")
    sql = build("row_compare", row=key_columns(queryset, key), op=op,
                values=placeholders(len(key)) if raw_rhs is None else raw_rhs)
    return RawSQL(sql, [] if raw_rhs is not None else key_values(queryset, key, values), output_field=BooleanField())


class Split:
    """Base class: `plan()` returns the partitions, writing nothing."""

    def plan(self) -> list[PartitionPlan]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise what `plan()` would raise, as cheaply as the split can tell (a job's start checks that the job
        can be planned; its plan step plans it in full). Here: by planning."""
        self.plan()


class KeyRange(Split):
    """Balanced half-open ranges of a unique ordered key over a queryset.

    One SQL query counts the rows and walks the key's index, jumping `k` rows
    from each boundary (`OFFSET k LIMIT 1` in a recursive CTE), so every range
    but the last holds exactly `k` rows and duplicate values in the leading key
    column never make ranges overlap: bounds compare the whole key tuple.
    """

    def __init__(self, queryset: QuerySet, key: Sequence[str] = ("id",), *, partitions: int | None = None,
                 rows_per_partition: int | None = None, scope: dict | None = None):
        if (partitions is None) == (rows_per_partition is None):
            raise JobCodeError("KeyRange needs exactly one of partitions= or rows_per_partition=")
        if (partitions or rows_per_partition or 0) < 1:
            raise JobCodeError("KeyRange partitions / rows_per_partition must be >= 1")
        self.queryset, self.key = queryset, list(key)
        self.partitions, self.rows_per_partition, self.scope = partitions, rows_per_partition, scope or {}

    def boundaries_sql(self) -> tuple[str, list[Any]]:
        """The walk's SQL and parameters, built at run time: it runs over the job type's own queryset and key."""
        base = self.queryset.order_by(*self.key).values_list(*self.key)
        count_sql, count_params = self.queryset.order_by().values("pk").query.sql_with_params()
        first_sql, first_params = base.query.sql_with_params()
        step = base.filter(row_compare(self.queryset, self.key, ">=", None, raw_rhs=", ".join(
            f"b.c{i}" for i in range(len(self.key))
        )))
        step_sql, step_params = step.query.sql_with_params()
        columns = ", ".join(f"c{i}" for i in range(len(self.key)))
        sql = build("key_range_boundaries", count_sql=count_sql, first_sql=first_sql, step_sql=step_sql,
                    columns=columns, s_columns=", ".join(f"s.c{i}" for i in range(len(self.key))))
        params = [self.rows_per_partition, self.partitions or 1, *count_params, *first_params, *step_params]
        return sql, params

    def check(self) -> None:
        """The walk's statement planned and the scope's first row read, without counting or walking the rows."""
        _check_statement(*self.boundaries_sql(), self.queryset)

    def plan(self) -> list[PartitionPlan]:
        sql, params = self.boundaries_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        total, k = rows[0][0], rows[0][1]
        bounds = [to_json(list(row[3:])) for row in rows if row[2] is not None]
        # A remainder smaller than half a range is folded into the previous one.
        if bounds and total - len(bounds) * k < k / 2:
            bounds.pop()
        edges = [None, *bounds, None]
        plans = []
        for i in range(len(edges) - 1):
            size = k if i < len(edges) - 2 else total - k * (len(edges) - 2)
            plans.append(PartitionPlan(kind="range", lower=edges[i], upper=edges[i + 1], estimated_items=size,
                                       key=self.key, scope=self.scope))
        return plans


class Modulo(Split):
    """`key % buckets = r` for r in 0..buckets-1 over an integer key; one query counts every bucket."""

    def __init__(self, queryset: QuerySet, key: str = "id", *, buckets: int, scope: dict | None = None):
        if buckets < 1:
            raise JobCodeError("Modulo buckets must be >= 1")
        self.queryset, self.key, self.buckets, self.scope = queryset, key, buckets, scope or {}

    def _counts(self) -> QuerySet:
        """The rows of each bucket, in one query: `(bucket, rows)`."""
        return (self.queryset.order_by().annotate(bucket=Mod(F(self.key), Value(self.buckets)))
                .values_list("bucket").annotate(n=Count("*")))

    def check(self) -> None:
        """The counting statement planned and the scope's first row read, without counting the rows."""
        try:
            sql, params = self._counts().query.sql_with_params()
        except EmptyResultSet:  # an empty scope (`.none()`): plan() reads nothing, so nothing can fail
            return
        _check_statement(sql, params, self.queryset)

    def plan(self) -> list[PartitionPlan]:
        counts = dict(self._counts())
        return [
            PartitionPlan(kind="modulo", modulus=self.buckets, remainder=r, estimated_items=counts.get(r, 0),
                          key=[self.key], scope=self.scope)
            for r in range(self.buckets)
        ]


class Items(Split):
    """Sub-job items chunked into partitions of `chunk_size`.

    Items that share an ordering key go to the partition that got the first of
    them, in their original order (a chunk may then exceed chunk_size).
    """

    def __init__(self, specs: Iterable[ItemSpec | dict], *, chunk_size: int = 100, scope: dict | None = None):
        if chunk_size < 1:
            raise JobCodeError("Items chunk_size must be >= 1")
        self.specs, self.chunk_size, self.scope = specs, chunk_size, scope or {}

    def plan(self) -> list[PartitionPlan]:
        chunks: list[list[ItemSpec]] = []
        home: dict[str, int] = {}
        seen: set[str] = set()
        for raw in self.specs:
            spec = raw if isinstance(raw, ItemSpec) else ItemSpec(**raw)
            if spec.key in seen:
                raise JobCodeError(f"duplicate item key {spec.key!r}")
            seen.add(spec.key)
            if spec.ordering_key and spec.ordering_key in home:
                chunks[home[spec.ordering_key]].append(spec)
                continue
            if not chunks or len(chunks[-1]) >= self.chunk_size:
                chunks.append([])
            if spec.ordering_key:
                home[spec.ordering_key] = len(chunks) - 1
            chunks[-1].append(spec)
        return [PartitionPlan(kind="items", estimated_items=len(c), items=c, scope=self.scope) for c in chunks]


def _check_statement(sql: str, params: Sequence[Any], scope: QuerySet) -> None:
    """EXPLAIN a split's statement (the errors of its text, as running it raises them) and read the first row of
    its scope (what its conditions raise on the rows they see: a bad pattern, a failing cast)."""
    with connection.cursor() as cursor:
        cursor.execute(build("explain", statement=sql), params)
    scope.exists()


def _each(splits: Split | Sequence[Split]) -> Sequence[Split]:
    return [splits] if isinstance(splits, Split) else splits


def plan_splits(splits: Split | Sequence[Split]) -> list[PartitionPlan]:
    """What a job type's split() returned (one split or several), planned in order."""
    return [plan for split in _each(splits) for plan in split.plan()]


def check_splits(splits: Split | Sequence[Split]) -> None:
    """Raise what `plan_splits(splits)` would raise, as cheaply as each split can tell (`Split.check`)."""
    for split in _each(splits):
        split.check()
