-- name: job_failure_groups
-- A job's failed and skipped items grouped by reason: count, failed of it, first/last seen, first example.
-- One index-only pass over subjob_failure_reason_idx (partial on the ledger's statuses; status and the seen
-- times are included columns), whatever the number of items; the total and the number of groups come from the
-- same aggregate (window sums over the groups), and only the %(limit)s largest groups read their first example
-- row, by id.
WITH g AS (
        SELECT reason, count(*) AS n, count(*) FILTER (WHERE status = {subjob_failed}) AS failed,
               min(id) AS first_id, min(first_seen_at) AS first_seen, max(last_seen_at) AS last_seen
        FROM partitions_subjob
        WHERE job_id = %(job_id)s AND status IN ({subjob_ledger})
        GROUP BY reason
    ), ranked AS (
        SELECT g.*, sum(n) OVER () AS total, count(*) OVER () AS groups FROM g
        ORDER BY n DESC, reason LIMIT %(limit)s
    )
    SELECT r.reason, r.n, r.failed, r.first_seen, r.last_seen, r.total, r.groups,
           s.key, s.error, s.error_class
    FROM ranked r JOIN partitions_subjob s ON s.id = r.first_id
    ORDER BY r.n DESC, r.reason

-- name: job_failure_items_after
-- One keyset page of a job's failed and skipped items in (reason, id) order, after a given item.
-- The cursor is the last item's id (its reason read by id when not given): a row comparison on the index's
-- (reason, id) after job_id, so page 1,000 costs what page 1 does. %(status)s narrows to failed or skipped.
SELECT s.id, s.key, s.status, s.attempts, s.error_class, s.reason, s.error, s.first_seen_at, s.last_seen_at,
           s.partition_id, s.note
    FROM partitions_subjob s
    WHERE s.job_id = %(job_id)s AND s.status IN ({subjob_ledger})
      AND (%(status)s::text IS NULL OR s.status = %(status)s::text)
      AND (s.reason, s.id) > (coalesce(%(after_reason)s::text,
                                       (SELECT a.reason FROM partitions_subjob a WHERE a.id = %(after_id)s::bigint),
                                       ''),
                              coalesce(%(after_id)s::bigint, 0))
    ORDER BY s.reason, s.id
    LIMIT %(limit)s

-- name: job_failure_reason_items_after
-- One keyset page of the failed and skipped items of one reason of a job, in id order, after a given id.
-- Equality on the index's job_id and reason, a range on its id: each page reads only its own rows.
SELECT s.id, s.key, s.status, s.attempts, s.error_class, s.reason, s.error, s.first_seen_at, s.last_seen_at,
           s.partition_id, s.note
    FROM partitions_subjob s
    WHERE s.job_id = %(job_id)s AND s.status IN ({subjob_ledger}) AND s.reason = %(reason)s
      AND (%(status)s::text IS NULL OR s.status = %(status)s::text)
      AND s.id > coalesce(%(after_id)s::bigint, 0)
    ORDER BY s.id
    LIMIT %(limit)s

-- name: subjobs_skip_failed_of_reason
-- An operator skips the failed items of one reason of a job, with a note; their partitions' counters follow.
-- One statement: the guarded UPDATE (failed -> skipped, an edge of the sub-job transition table) and the
-- counters of each partition it touched (failed down, skipped up by as many: handled stays the same).
-- Returns one row per partition touched, with how many of its items were skipped.
WITH moved AS (
        UPDATE partitions_subjob s SET status = {subjob_skipped}, {subjob_enters_skipped(s)}, note = %(note)s
        WHERE s.job_id = %(job_id)s AND s.reason = %(reason)s AND s.status = {subjob_failed}
        RETURNING s.partition_id
    ), counts AS (
        SELECT partition_id, count(*) AS n FROM moved GROUP BY partition_id
    )
    UPDATE partitions_partition p
    SET failed_items = p.failed_items - c.n, skipped_items = p.skipped_items + c.n
    FROM counts c WHERE p.id = c.partition_id
    RETURNING p.id, c.n
