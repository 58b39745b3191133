-- name: job_partition_grid_cells
-- A job's partitions folded into the job page's grid: %(size)s consecutive partitions (seq order) to a cell.
-- One pass over the job's rows in seq order (partition_unique_job_seq), ≤ grid.MAX_CELLS rows out. Cells number
-- the rows densely, so gaps in seq never add cells. Per cell: its seq span, a count per status, the summed progress
-- of its unfinished partitions (each handled/estimated, capped at 1), attempts, one running worker, the estimated
-- items, the bounds of its first and last partition (built for those two rows only), and how many were split off
-- another (the page's "Splits" figure: no query of its own).
WITH p AS (
        SELECT seq, status, attempts, max_attempts, lease_owner, split_from_id, estimated_items,
               CASE WHEN status IN ({partition_terminal}) OR estimated_items <= 0 THEN 0
                    ELSE least(1.0, ({handled(partitions_partition)})::float8 / estimated_items) END AS part,
               kind, lower, upper, modulus, remainder,
               row_number() OVER (ORDER BY seq) - 1 AS rn, count(*) OVER () AS n
        FROM partitions_partition WHERE job_id = %(job_id)s
    ), c AS (
        SELECT rn / %(size)s AS cell, min(seq) AS first_seq, max(seq) AS last_seq,
               count(*) FILTER (WHERE status = {partition_pending}) AS pending,
               count(*) FILTER (WHERE status = {partition_running}) AS running,
               count(*) FILTER (WHERE status = {partition_succeeded}) AS succeeded,
               count(*) FILTER (WHERE status = {partition_failed}) AS failed,
               count(*) FILTER (WHERE status = {partition_cancelled}) AS cancelled,
               sum(part) AS unfinished_progress, max(attempts) AS attempts, max(max_attempts) AS max_attempts,
               max(lease_owner) FILTER (WHERE status = {partition_running}) AS worker,
               sum(estimated_items)::bigint AS estimated,
               (array_agg(jsonb_build_array(kind, lower, upper, modulus, remainder, estimated_items))
                   FILTER (WHERE rn %% %(size)s = 0))[1] AS first_bounds,
               (array_agg(jsonb_build_array(kind, lower, upper, modulus, remainder, estimated_items))
                   FILTER (WHERE rn %% %(size)s = %(size)s - 1 OR rn = n - 1))[1] AS last_bounds,
               count(split_from_id) AS splits
        FROM p GROUP BY rn / %(size)s
    )
    SELECT first_seq, last_seq, pending, running, succeeded, failed, cancelled, unfinished_progress, attempts,
           max_attempts, coalesce(worker, ''), estimated, first_bounds, last_bounds, splits
    FROM c ORDER BY cell
