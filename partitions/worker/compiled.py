"""A job's item query compiled once, with only a partition's bounds and the checkpoint bound per fetch.

Building and compiling a queryset per partition and per batch costs more Python than the fetch's round
trip (`bench claim`'s cost split). A `CompiledRows` compiles the scope's queryset once per drain (it lives
in the job's `JobSetup`) and wraps it in the registry's `items_fetch` template (`partitions/engine/sql/runtime.sql`),
so every fetch of a job is the same parameterised text (PostgreSQL flattens the subquery: the
key's index is used as before). Rows become model instances as the ORM's own iterable makes them
(`from_db`, with the compiler's converters), or, for a plain model (no custom `__init__` or `from_db`, no
init signal receivers, every concrete field selected), by filling each instance's `__dict__` directly: what
`Model.__init__` does for a fresh instance, without its per-field descriptor calls (a quarter of a no-op
drain's Python).

The SQL is built at run time, because it depends on the job type: from the registry's templates, the job type's
compiled queryset and the model's quoted column names, never from values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Model, QuerySet, prefetch_related_objects
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from partitions.engine.sql import build, conjunction


class CompiledRows:
    """The scope queryset's SQL and row loading, compiled once; `fetch` binds bounds, `after` and `limit`."""

    def __init__(self, queryset: QuerySet):
        self.model, self.db = queryset.model, queryset.db
        self.ops = connections[self.db].ops
        # Built once per drain, not per partition: every partition of a job has the same shape of statement.
        self._columns: dict[str, str] = {}
        self._statements: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        # Related rows load lazily instead (select_related would put duplicate column names in the subquery).
        self.prefetch = queryset._prefetch_related_lookups
        compiler = queryset.order_by().select_related(None).query.get_compiler(using=self.db)
        try:
            self.scope_sql, self.scope_params = compiler.as_sql()
        except EmptyResultSet:  # .none() or an empty IN: no row, and no query needed to know it
            self.scope_sql = None
            return
        select, fields = compiler.select, compiler.klass_info["select_fields"]
        self.model_columns = slice(fields[0], fields[-1] + 1)
        self.fields = [column.target.attname for column, _, _ in select[self.model_columns]]
        self.annotations = compiler.annotation_col_map
        self.compiler = compiler
        self.converters = compiler.get_converters([column for column, _, _ in select])
        self.plain = _plain_model(self.model, self.fields)

    @property
    def empty(self) -> bool:
        return self.scope_sql is None

    def column(self, name: str) -> str:
        """`_items."col"` for a field name of the model (the wrapped query's output column)."""
        if name not in self._columns:
            quoted = self.ops.quote_name(self.model._meta.get_field(name).column)
            self._columns[name] = build("items_column", column=quoted)
        return self._columns[name]

    def prepared(self, name: str, value: Any) -> Any:
        """A JSON-safe key value as the field's Python value, ready to bind."""
        return self.model._meta.get_field(name).to_python(value)

    def statement(self, bounds: Sequence[str], order: Sequence[str]) -> str:
        """The fetch text for these bound conditions; the same text for every partition of the same shape."""
        key = (tuple(bounds), tuple(order))
        if key not in self._statements:
            self._statements[key] = build("items_fetch", scope=self.scope_sql, bounds=conjunction(bounds),
                                          order=", ".join(order))
        return self._statements[key]

    def fetch(self, sql: str, params: Sequence[Any], limit: int) -> list:
        """Model instances of the rows `sql` (from `statement`) returns, with `params` then `limit` bound."""
        if self.empty:
            return []
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, (*self.scope_params, *params, limit))
            rows = cursor.fetchall()
        if self.converters:
            rows = list(self.compiler.apply_converters(rows, self.converters))
        if self.plain:
            items = _instances(self.model, self.db, self.fields, rows, self.model_columns)
        else:
            from_db, fields, db, columns = self.model.from_db, self.fields, self.db, self.model_columns
            items = [from_db(db, fields, row[columns]) for row in rows]
        if self.annotations:
            for item, row in zip(items, rows, strict=True):
                for name, position in self.annotations.items():
                    setattr(item, name, row[position])
        if self.prefetch and items:
            prefetch_related_objects(items, *self.prefetch)
        return items

    def count_held(self, bounds: Sequence[str], params: Sequence[Any], pks: Sequence[Any]) -> int:
        """How many of `pks` are rows of the scope inside `bounds`."""
        if self.empty:
            return 0
        sql = build("items_held", scope=self.scope_sql, bounds=conjunction(bounds),
                    pk=self.ops.quote_name(self.model._meta.pk.column))
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, (*self.scope_params, *params, list(pks)))
            return cursor.fetchone()[0]


def _plain_model(model: type[Model], fields: list[str]) -> bool:
    """Whether an instance of `model` from a row of `fields` is exactly its `__dict__` filled in."""
    return (model.__init__ is Model.__init__ and model.from_db.__func__ is Model.from_db.__func__
            and not pre_init.has_listeners(model) and not post_init.has_listeners(model)
            and fields == [field.attname for field in model._meta.concrete_fields])


def _instances(model: type[Model], db: str, fields: list[str], rows: list, columns: slice) -> list:
    """`model.from_db(db, fields, row)` of each row, for a `_plain_model`."""
    new = model.__new__
    items = []
    for row in rows:
        item = new(model)
        state = item._state = ModelState()
        state.adding, state.db = False, db
        item.__dict__.update(zip(fields, row[columns], strict=True))
        items.append(item)
    return items
