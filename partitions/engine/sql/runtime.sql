-- template: items_fetch(scope, bounds, order)
-- The next rows of a job type's scope within a partition's bounds, in key order (`bounds`: ANDed conditions).
-- The scope is the job type's queryset compiled once per drain (worker/compiled.py); PostgreSQL flattens the
-- subquery, so the key's index is used as if the bounds were written into it.
SELECT * FROM ({scope}) AS _items WHERE {bounds} ORDER BY {order} LIMIT %s

-- template: items_held(scope, bounds, pk)
-- How many of the given primary keys lie within the scope and a partition's bounds.
SELECT count(*) FROM ({scope}) AS _items WHERE {bounds} AND _items.{pk} = ANY(%s)

-- template: items_column(column)
-- A column of the wrapped scope (`column`: the quoted name), as items_fetch and items_held see it.
_items.{column}

-- template: row_compare(row, op, values)
-- A row comparison on a key, `(k1, k2) >= (v1, v2)`: keyset bounds compare the whole key tuple, so duplicate
-- values in its leading column never make two ranges overlap. `op` is one of splits.ROW_OPERATORS.
({row}) {op} ({values})

-- template: key_in_bucket(column)
-- A modulo partition's bound: the key's remainder by the modulus (both parameters).
mod({column}, %s) = %s

-- template: explain(statement)
-- A split's statement planned, not run (`Split.check`, the start's check that a job can be planned): every
-- error of its text (a column, a type, a value out of range) is raised as running it raises it, at a fraction
-- of its cost.
EXPLAIN {statement}

-- template: key_range_boundaries(count_sql, first_sql, step_sql, columns, s_columns)
-- The planner's keyset walk: count the rows, then jump `k` rows from each boundary along the key's index.
-- `k` is rows_per_partition when given (the first parameter), else the count over partitions (the second).
-- OFFSET k LIMIT 1 in a recursive CTE, so every range but the last holds exactly k rows.
WITH RECURSIVE params AS (
        SELECT count(*) AS total,
               coalesce(%s::bigint, greatest(1, ceil(count(*)::numeric / %s))::bigint) AS k
        FROM ({count_sql}) counted
    ), b(n, {columns}) AS (
        SELECT 1, {s_columns} FROM params, LATERAL ({first_sql} OFFSET params.k LIMIT 1) s({columns})
        UNION ALL
        SELECT b.n + 1, {s_columns} FROM b, params, LATERAL ({step_sql} OFFSET params.k LIMIT 1) s({columns})
    )
    SELECT params.total, params.k, b.* FROM params LEFT JOIN b ON true ORDER BY b.n
