-- name: jobs_sample_window
-- The rate window's samples of some jobs, oldest first, with the database clock on every row.
-- One row of NULLs (LEFT JOIN) when none was taken, so the clock is always read. Samples are handled counts,
-- not min() of them: a sub-job retry takes failed items out of the counters, so they can go down.
SELECT now(), s.job_id, s.taken_at, {handled(s)}, s.live_leases
    FROM (SELECT 1) AS clock
    LEFT JOIN partitions_jobsample s
           ON s.job_id = ANY(%(ids)s::bigint[]) AND s.taken_at >= now() - make_interval(secs => %(window)s)
    ORDER BY s.job_id, s.taken_at

-- name: job_samples_thinned
-- Every k-th sample of a job (plus the last), so a chart of a week-long job stays ~max_points wide.
WITH s AS (
        SELECT taken_at, {handled(partitions_jobsample)} AS handled, live_leases,
               row_number() OVER (ORDER BY taken_at) AS rn, count(*) OVER () AS n
        FROM partitions_jobsample WHERE job_id = %(job_id)s
    )
    SELECT taken_at, handled, live_leases FROM s
    WHERE (rn - 1) %% greatest(1, ceil(n::numeric / %(points)s))::bigint = 0 OR rn = n
    ORDER BY taken_at

-- name: subjobs_finish
-- Finish many sub-jobs in one statement: %(rows)s is one JSON array of {id, ms, result, error, tb, cls,
-- reason}, guarded by %(from)s, the transition table's sources of the target %(target)s
-- (lifecycle.subjobs_finish); every target is terminal, so each stamps what entering succeeded does. A
-- failure or skip (a reason) is also the ledger's: first seen kept across operator retries, last seen now; a
-- success keeps both. One JSON text, not seven arrays: the driver dumps arrays element by element in Python,
-- the JSON encoder in C.
UPDATE partitions_subjob s
    SET status = %(target)s, {subjob_enters_succeeded(s)}, attempts = s.attempts + 1,
        duration_ms = v.ms, result = v.result, error = v.error, traceback = v.tb,
        error_class = v.cls, reason = v.reason,
        first_seen_at = CASE WHEN v.reason = '' THEN s.first_seen_at
                             ELSE coalesce(s.first_seen_at, statement_timestamp()) END,
        last_seen_at = CASE WHEN v.reason = '' THEN s.last_seen_at ELSE statement_timestamp() END
    FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS v(id bigint, ms int, result jsonb, error text, tb text, cls text, reason text)
    WHERE s.id = v.id AND s.status = ANY(%(from)s)

-- name: async_commit
-- This transaction's commit may be lost in a crash of the database server (the plan: it is planned again).
-- The job, its partitions and sub-jobs go together, the job stays planning, and tick plans it again once its
-- step lease runs out. Any later synchronous commit flushes it anyway: the log is written in order.
SET LOCAL synchronous_commit = off

-- name: subjobs_copy
-- A plan's sub-jobs, streamed in with COPY.
COPY partitions_subjob (job_id, partition_id, seq, key, payload, ordering_key, status, attempts, error) FROM STDIN

-- name: subjobs_move_from_cut
-- A split: the pending sub-jobs at or after the cut whose ordering key (if any) has no pending item before it.
UPDATE partitions_subjob s SET partition_id = %(new)s
    WHERE s.partition_id = %(old)s AND s.status = {subjob_pending} AND s.seq >= %(cut)s
      AND (%(after)s::bigint IS NULL OR s.seq > %(after)s::bigint)
      AND (s.ordering_key = '' OR NOT EXISTS (
            SELECT 1 FROM partitions_subjob e
            WHERE e.partition_id = %(old)s AND e.status = {subjob_pending} AND e.ordering_key = s.ordering_key
              AND e.seq < %(cut)s))

-- name: subjob_durations
-- Sub-job durations of a job (handled ones): percentiles and max, in one pass over subjob_job_status_idx.
SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms), max(duration_ms),
           coalesce(sum(attempts), 0), count(*) FILTER (WHERE attempts > 1)
    FROM partitions_subjob
    WHERE job_id = %(job_id)s AND status IN ({subjob_handled}) AND duration_ms IS NOT NULL

-- name: job_failures_by_class
-- Failures of a job grouped by error class, with a count and one example; from failed sub-jobs and partitions.
-- A sub-job's class is the ledger's (written with its outcome, partitions.jobtypes.reasons); a partition's last error
-- has none stored, so its class is the text before the first ':' (the `Type: message` of its error line).
SELECT class, count(*), min(error) FROM (
        SELECT coalesce(nullif(error_class, ''), split_part(error, ':', 1)) AS class, error FROM partitions_subjob
        WHERE job_id = %(job_id)s AND status = {subjob_failed} AND error <> ''
        UNION ALL
        SELECT split_part(last_error, ':', 1), last_error FROM partitions_partition
        WHERE job_id = %(job_id)s AND status = {partition_failed} AND last_error <> ''
    ) e GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(limit)s

-- name: oldest_running_partition_seconds
-- /metrics: seconds since the longest-running partition was first claimed, on the database clock.
SELECT EXTRACT(EPOCH FROM statement_timestamp() - min(started_at)) FROM partitions_partition
    WHERE status = {partition_running}
